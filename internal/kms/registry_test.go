package kms

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
)

type fakeConfig struct{ Bad bool }

func (c *fakeConfig) Validate() error {
	if c.Bad {
		return errors.New("bad: must be false")
	}
	return nil
}

func (c *fakeConfig) Open(context.Context, *slog.Logger) (KMS, error) { return nil, nil }

func TestRegisterLookup(t *testing.T) {
	Register("registry-test", ProviderFunc(func() Config { return &fakeConfig{} }))

	p, ok := Lookup("registry-test")
	if !ok {
		t.Fatal("Lookup: registered provider not found")
	}
	a, b := p.NewConfig(), p.NewConfig()
	if a == b {
		t.Fatal("NewConfig returned the same value twice; configs must be fresh")
	}
	if err := a.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	a.(*fakeConfig).Bad = true
	if err := a.Validate(); err == nil {
		t.Fatal("Validate accepted a bad config")
	}
	if b.(*fakeConfig).Bad {
		t.Fatal("configs share state")
	}
	if _, ok := Lookup("registry-test-missing"); ok {
		t.Fatal("Lookup found an unregistered name")
	}
	if !slices.Contains(Names(), "registry-test") || !slices.IsSorted(Names()) {
		t.Fatalf("Names() = %v: want sorted, containing registry-test", Names())
	}
}

func TestRegisterPanics(t *testing.T) {
	Register("registry-test-dup", ProviderFunc(func() Config { return &fakeConfig{} }))
	for name, f := range map[string]func(){
		"duplicate":  func() { Register("registry-test-dup", ProviderFunc(func() Config { return nil })) },
		"empty name": func() { Register("", ProviderFunc(func() Config { return nil })) },
		"nil":        func() { Register("registry-test-nil", nil) },
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			f()
		})
	}
}

func TestRegisterDescriber(t *testing.T) {
	RegisterDescriber("describer-test", func(edek []byte) (EDEKInfo, error) {
		return EDEKInfo{KEK: string(edek), Version: "7"}, nil
	})
	f, ok := LookupDescriber("describer-test")
	if !ok {
		t.Fatal("LookupDescriber: registered describer not found")
	}
	if info, err := f([]byte("KEK-a")); err != nil || info != (EDEKInfo{KEK: "KEK-a", Version: "7"}) {
		t.Fatalf("describer returned %+v, %v", info, err)
	}
	if _, ok := LookupDescriber("describer-missing"); ok {
		t.Fatal("LookupDescriber found an unregistered name")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("registering a describer twice did not panic")
		}
	}()
	RegisterDescriber("describer-test", func([]byte) (EDEKInfo, error) { return EDEKInfo{}, nil })
}
