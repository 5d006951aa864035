package app

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// kmsTypeLine finds a provider's `type:` line in a kms block.
var kmsTypeLine = regexp.MustCompile(`(?m)^\s+type:\s*(\w+)`)

// kmsExamples returns the `kms:` blocks of the yaml code blocks of a
// Markdown file, each with its provider type: the `kms:` line and the lines
// indented deeper that follow it.
func kmsExamples(t *testing.T, path string) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	parts := strings.Split(string(data), "```yaml\n")
	for _, part := range parts[1:] {
		code, _, _ := strings.Cut(part, "```")
		lines := strings.Split(code, "\n")
		for i, line := range lines {
			if trim := strings.TrimSpace(line); trim != "kms:" && !strings.HasPrefix(trim, "kms: ") {
				continue
			}
			indent := len(line) - len(strings.TrimLeft(line, " "))
			block := []string{strings.TrimLeft(line, " ")}
			for _, l := range lines[i+1:] {
				if strings.TrimSpace(l) != "" && len(l)-len(strings.TrimLeft(l, " ")) <= indent {
					break
				}
				if len(l) >= indent {
					l = l[indent:]
				}
				block = append(block, l)
			}
			text := strings.Join(block, "\n")
			m := kmsTypeLine.FindStringSubmatch(text)
			if m == nil {
				continue
			}
			out[m[1]] = append(out[m[1]], text)
		}
	}
	return out
}

// Every provider has a KMS example in the README and in docs/config.md, and
// each example passes `kseal validate` (decoding into the provider's
// config, unknown keys and types included, and its Validate) inside a
// virtual cluster.
func TestKMSDocExamples(t *testing.T) {
	root := filepath.Join("..", "..")
	for _, doc := range []string{"README.md", filepath.Join("docs", "config.md")} {
		examples := kmsExamples(t, filepath.Join(root, doc))
		for _, provider := range []string{"local", "vault", "kmip", "hadoop", "aws", "azure"} {
			if len(examples[provider]) == 0 {
				t.Errorf("%s: no example of kms type %s", doc, provider)
			}
		}
		for provider, blocks := range examples {
			t.Logf("%s: %d example(s) of %s", doc, len(blocks), provider)
			for _, b := range blocks {
				kek := "KEK-$(topicName)"
				if provider == "hadoop" {
					kek = "kek-$(topicName)"
				}
				var sb strings.Builder
				sb.WriteString(vcHead)
				for _, l := range strings.Split(b, "\n") {
					sb.WriteString("      " + l + "\n")
				}
				sb.WriteString("      policy:\n        rules:\n          - {topicRegex: '.*', kek: '" + kek + "'}\n")
				if problems := validateDoc(t, sb.String()); len(problems) > 0 {
					t.Errorf("%s: the %s example is refused: %v\n%s", doc, provider, problems, b)
				}
			}
		}
	}
}
