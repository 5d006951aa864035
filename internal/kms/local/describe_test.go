package local

import (
	"testing"

	"github.com/kseal/kseal/internal/kms"
)

func TestDescriberRegistered(t *testing.T) {
	f, ok := kms.LookupDescriber("local")
	if !ok {
		t.Fatal("no describer registered for local")
	}
	edek := append(appendEDEK(nil, "KEK-orders", 3), make([]byte, wrappedLen)...)
	info, err := f(edek)
	if err != nil || info.KEK != "KEK-orders" || info.Version != "3" {
		t.Fatalf("describe = %+v, %v; want KEK-orders v3", info, err)
	}
	if _, err := f(edek[:len(edek)-1]); err == nil {
		t.Fatal("describer accepted a truncated EDEK")
	}
}
