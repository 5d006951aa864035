package azure

import (
	"testing"
	"time"

	"github.com/kseal/kseal/internal/kms/azure/azurefake"
)

// fakeVault is the fake Key Vault of package azurefake, shared with the
// end-to-end suite.
type fakeVault = azurefake.Vault

func newFakeVault(t *testing.T) *fakeVault { return azurefake.New(t) }

// fakeConfig returns a managed identity config for the fake.
func fakeConfig(f *fakeVault) *Config {
	c := NewConfig()
	c.VaultURL = f.URL()
	c.Timeout = 2 * time.Second
	c.Auth.Method = MethodManagedIdentity
	c.Auth.IdentityEndpoint = f.IdentityEndpoint()
	c.TLS.CAFile = f.CAFile
	return c
}

// The fake's answer helpers, for tests with servers of their own.
var (
	writeJSON = azurefake.WriteJSON
	vaultErr  = azurefake.WriteError
)
