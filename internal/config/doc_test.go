package config_test

import (
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/kseal/kseal/internal/app"
	"github.com/kseal/kseal/internal/config"
	"github.com/kseal/kseal/internal/detkey"
	"github.com/kseal/kseal/internal/kms"
	"github.com/kseal/kseal/internal/policy"
)

// Sections of the tree that config leaves as YAML nodes for another package
// to decode, and the struct each is decoded into. The provider sections
// (kms.config) come from the KMS registry.
var nodeSections = map[string]any{
	"virtualClusters[].encryption.policy":   policy.Config{},
	"virtualClusters[].encryption.dek":      app.DEKConfig{},
	"virtualClusters[].encryption.keyTopic": detkey.Config{},
}

const kmsConfigPath = "virtualClusters[].encryption.kms.config"

var nodeType = reflect.TypeFor[yaml.Node]()

// yamlKeys appends the path of every leaf key of t (a struct decoded from
// YAML) under prefix: nested maps become "a.b", lists of maps "a[].b".
// Fields left as YAML nodes are decoded elsewhere: their paths go to nodes.
func yamlKeys(t *testing.T, typ reflect.Type, prefix string, keys, nodes *[]string) {
	for typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if strings.Contains(opts, "inline") {
			yamlKeys(t, ft, prefix, keys, nodes)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name) // yaml.v3's default
		}
		path := prefix + name
		switch {
		case ft == nodeType:
			*nodes = append(*nodes, path)
		case ft.Kind() == reflect.Struct:
			yamlKeys(t, ft, path+".", keys, nodes)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			yamlKeys(t, ft.Elem(), path+"[].", keys, nodes)
		default:
			*keys = append(*keys, path)
		}
	}
}

// allKeys is every key the config file can hold, provider sections written
// "virtualClusters[].encryption.kms.config#vault.address".
func allKeys(t *testing.T) []string {
	var keys, nodes []string
	yamlKeys(t, reflect.TypeFor[config.Config](), "", &keys, &nodes)
	for _, n := range nodes {
		if n == kmsConfigPath {
			for _, name := range kms.Names() {
				p, _ := kms.Lookup(name)
				var sub []string
				yamlKeys(t, reflect.TypeOf(p.NewConfig()), n+"#"+name+".", &keys, &sub)
				if len(sub) > 0 {
					t.Errorf("provider %s: YAML node fields %v: teach this test what they decode into", name, sub)
				}
			}
			continue
		}
		v, ok := nodeSections[n]
		if !ok {
			t.Errorf("%s is decoded by another package: add its struct to nodeSections", n)
			continue
		}
		var sub []string
		yamlKeys(t, reflect.TypeOf(v), n+".", &keys, &sub)
		if len(sub) > 0 {
			t.Errorf("%s: YAML node fields %v: add their structs to nodeSections", n, sub)
		}
	}
	return keys
}

var (
	headingRE  = regexp.MustCompile("^#{1,6} ")
	codeSpanRE = regexp.MustCompile("`([^`]+)`")
	providerRE = regexp.MustCompile(`^type: ([a-z0-9]+)$`)
)

// documentedKeys reads the tables of docs/config.md: the code spans in a
// row's first cell are keys relative to the path in the section heading
// above them (a "type: NAME" heading is provider NAME's part of the
// kms.config section).
func documentedKeys(doc string) map[string]bool {
	out := map[string]bool{}
	prefix, section := "", ""
	for _, line := range strings.Split(doc, "\n") {
		if headingRE.MatchString(line) {
			prefix = ""
			m := codeSpanRE.FindStringSubmatch(line)
			switch {
			case m == nil:
				section = ""
			case providerRE.MatchString(m[1]):
				prefix = section + "#" + providerRE.FindStringSubmatch(m[1])[1] + "."
			default:
				section = m[1]
				prefix = section + "."
			}
			continue
		}
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range codeSpanRE.FindAllStringSubmatch(cells[1], -1) {
			out[prefix+m[1]] = true
		}
	}
	return out
}

// Every key of the config structs, and of the sections other packages
// decode (policy, dek, each registered KMS provider), is in the reference;
// and every key the reference lists exists.
func TestConfigReferenceIsComplete(t *testing.T) {
	b, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := documentedKeys(string(b))
	keys := allKeys(t)
	if len(keys) < 80 {
		t.Fatalf("found only %d keys in the config structs: the walk is broken", len(keys))
	}
	for _, name := range []string{"local", "vault", "aws", "azure"} {
		if _, ok := kms.Lookup(name); !ok {
			t.Errorf("provider %s is not registered in this test binary", name)
		}
	}
	var missing []string
	for _, k := range keys {
		if !doc[k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		t.Errorf("docs/config.md lacks %d keys (write them relative to their section's heading; provider keys under their \"type: NAME\" heading):\n  %s",
			len(missing), strings.Join(missing, "\n  "))
	}

	// The other way: a documented key must exist, or be a section holding
	// keys (e.g. `encryption.kms.config`).
	var unknown []string
	for d := range doc {
		found := false
		for _, k := range keys {
			if k == d || strings.HasPrefix(k, d+".") || strings.HasPrefix(k, d+"#") || strings.HasPrefix(k, d+"[].") {
				found = true
				break
			}
		}
		if !found {
			unknown = append(unknown, d)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		t.Errorf("docs/config.md documents keys the config structs do not have:\n  %s", strings.Join(unknown, "\n  "))
	}
}
