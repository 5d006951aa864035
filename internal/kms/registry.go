package kms

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
)

// Config is one provider's configuration. The config loader decodes the
// provider's YAML section into the value NewConfig returns (strictly: unknown
// keys are errors), calls Validate, and only then Open, so a config that
// `kseal validate` accepts is one `kseal run` can open.
type Config interface {
	// Validate checks the decoded values without touching files or the
	// network. Its errors name the bad key relative to the provider's section
	// ("masterKeyFile: ..."); the loader adds the path of the section.
	Validate() error
	// Open connects to or loads the KMS. The result may implement Closer.
	Open(ctx context.Context, logger *slog.Logger) (KMS, error)
}

// Provider makes configurations for one kind of KMS.
type Provider interface {
	// NewConfig returns a fresh pointer to a config holding the provider's
	// defaults, ready to be decoded into.
	NewConfig() Config
}

// ProviderFunc adapts a function to Provider.
type ProviderFunc func() Config

// NewConfig calls f.
func (f ProviderFunc) NewConfig() Config { return f() }

var (
	providersMu sync.RWMutex
	providers   = map[string]Provider{}
)

// Register makes a provider available under name, the value of the config's
// `type:` key. Providers call it from init; it panics on an empty or
// duplicate name or a nil provider, since either is a programming error.
func Register(name string, p Provider) {
	if name == "" || p == nil {
		panic("kms: Register with empty name or nil provider")
	}
	providersMu.Lock()
	defer providersMu.Unlock()
	if _, dup := providers[name]; dup {
		panic(fmt.Sprintf("kms: provider %q registered twice", name))
	}
	providers[name] = p
}

// Lookup returns the provider registered under name.
func Lookup(name string) (Provider, bool) {
	providersMu.RLock()
	defer providersMu.RUnlock()
	p, ok := providers[name]
	return p, ok
}

// Names returns the registered provider names, sorted, for error messages
// such as `kms.type: unknown "vualt" (known: local, vault)`.
func Names() []string {
	providersMu.RLock()
	defer providersMu.RUnlock()
	names := make([]string, 0, len(providers))
	for n := range providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DescribeFunc reads what an EDEK says about its KEK without calling the
// KMS. It must bound its work by len(edek): EDEKs come from records at the
// broker, which anyone able to produce directly could have written.
type DescribeFunc func(edek []byte) (EDEKInfo, error)

var (
	describersMu sync.RWMutex
	describers   = map[string]DescribeFunc{}
)

// RegisterDescriber makes an offline EDEK describer available under the
// provider's name, so inspection tools can name KEKs and versions with no
// KMS access. It panics on an empty or duplicate name or a nil function.
func RegisterDescriber(name string, f DescribeFunc) {
	if name == "" || f == nil {
		panic("kms: RegisterDescriber with empty name or nil function")
	}
	describersMu.Lock()
	defer describersMu.Unlock()
	if _, dup := describers[name]; dup {
		panic(fmt.Sprintf("kms: describer %q registered twice", name))
	}
	describers[name] = f
}

// LookupDescriber returns the describer registered under name.
func LookupDescriber(name string) (DescribeFunc, bool) {
	describersMu.RLock()
	defer describersMu.RUnlock()
	f, ok := describers[name]
	return f, ok
}
