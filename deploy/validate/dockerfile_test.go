package validate

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// dockerfile is the parsed Dockerfile with its ARG defaults.
type dockerfile struct {
	stages []instructions.Stage
	args   map[string]string // global ARG defaults
}

// parseDockerfile parses with BuildKit's own parser and instruction parser
// (what `docker build` runs first) and fails on any of its lint warnings.
func parseDockerfile(t *testing.T, data []byte) dockerfile {
	t.Helper()
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range res.Warnings {
		t.Errorf("Dockerfile: parser warning: %s", w.Short)
	}
	var lint []string
	l := linter.New(&linter.Config{Warn: func(rule, _, _, msg string, loc []parser.Range) {
		lint = append(lint, fmt.Sprintf("%s: %s (line %v)", rule, msg, loc))
	}})
	stages, metaArgs, err := instructions.Parse(res.AST, l)
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	for _, w := range lint {
		t.Errorf("Dockerfile: BuildKit lint: %s", w)
	}
	d := dockerfile{stages: stages, args: map[string]string{}}
	for _, a := range metaArgs {
		for _, kv := range a.Args {
			if kv.Value != nil {
				d.args[kv.Key] = *kv.Value
			}
		}
	}
	return d
}

var argRef = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// expand substitutes global ARG defaults, as in FROM lines.
func (d dockerfile) expand(s string) string {
	return argRef.ReplaceAllStringFunc(s, func(ref string) string {
		return d.args[argRef.FindStringSubmatch(ref)[1]]
	})
}

func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	d := parseDockerfile(t, data)
	if len(d.stages) < 2 {
		t.Fatalf("Dockerfile: %d stage(s), want a build stage and a runtime stage", len(d.stages))
	}
	build, final := d.stages[0], d.stages[len(d.stages)-1]

	t.Run("build stage", func(t *testing.T) {
		base := d.expand(build.BaseName)
		img, tag, _ := strings.Cut(base, ":")
		if img != "golang" {
			t.Fatalf("first stage FROM %s, want the official golang image", base)
		}
		if want := goModVersion(t); compareVersions(tag, want) < 0 {
			t.Errorf("FROM %s: Go %s is older than go.mod's go %s (golang images set GOTOOLCHAIN=local)", base, tag, want)
		}
		var buildCmd string
		for _, cmd := range build.Commands {
			if r, ok := cmd.(*instructions.RunCommand); ok && strings.Contains(strings.Join(r.CmdLine, " "), "go build") {
				buildCmd = strings.Join(r.CmdLine, " ")
			}
		}
		if buildCmd == "" {
			t.Fatal("no RUN go build in the build stage")
		}
		wantLD := `-ldflags "` + strings.NewReplacer(buildVersion, "${VERSION}", buildCommit, "${COMMIT}").Replace(buildLDFlags) + `"`
		for _, want := range []string{"CGO_ENABLED=0", "-trimpath", wantLD, "./cmd/kseal"} {
			if !strings.Contains(buildCmd, want) {
				t.Errorf("RUN %q lacks %s (TestBinaryIsStatic builds with the same flags)", buildCmd, want)
			}
		}
		checkCopiesBuildInputs(t, build)
	})

	t.Run("runtime stage", func(t *testing.T) {
		base := d.expand(final.BaseName)
		if base != "scratch" && !(strings.HasPrefix(base, "gcr.io/distroless/static") && strings.HasSuffix(base, ":nonroot")) {
			t.Errorf("last stage FROM %s, want gcr.io/distroless/static*:nonroot or scratch", base)
		}
		var user string
		var entrypoint, cmdArgs []string
		var exposed []int32
		copied := false
		for _, cmd := range final.Commands {
			switch c := cmd.(type) {
			case *instructions.UserCommand:
				user = c.User
			case *instructions.RunCommand:
				t.Errorf("RUN %q in the runtime stage: the base has no shell", c.CmdLine)
			case *instructions.HealthCheckCommand:
				if c.Health == nil || len(c.Health.Test) == 0 || c.Health.Test[0] != "NONE" {
					t.Errorf("HEALTHCHECK in the runtime stage: the base has no shell or HTTP client to run it; Kubernetes probes the admin port")
				}
			case *instructions.CopyCommand:
				if c.From == build.Name && slices.Contains(c.SourcePaths, "/out/kseal") {
					copied = true
				}
			case *instructions.EntrypointCommand:
				if c.PrependShell {
					t.Errorf("ENTRYPOINT %q is in shell form: the base has no shell", c.CmdLine)
				}
				entrypoint = c.CmdLine
			case *instructions.CmdCommand:
				if c.PrependShell {
					t.Errorf("CMD %q is in shell form: the base has no shell", c.CmdLine)
				}
				cmdArgs = c.CmdLine
			case *instructions.ExposeCommand:
				for _, p := range c.Ports {
					ports, err := exposePorts(p)
					if err != nil {
						t.Error(err)
					}
					exposed = append(exposed, ports...)
				}
			}
		}
		if !copied {
			t.Errorf("the runtime stage does not COPY --from=%s /out/kseal", build.Name)
		}
		if len(entrypoint) != 1 || !strings.HasSuffix(entrypoint[0], "/kseal") {
			t.Errorf("ENTRYPOINT %q, want the kseal binary alone", entrypoint)
		}
		uid, _, _ := strings.Cut(user, ":")
		n, err := strconv.Atoi(uid)
		if err != nil || n == 0 {
			t.Errorf("USER %q: want a numeric non-root uid (runAsNonRoot cannot check a name)", user)
		}
		for _, v := range variants {
			b := loadBundle(t, v.dir)
			c := newChecks(t, b, v)
			if sc := c.pod.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser != int64(n) {
				t.Errorf("%s: runAsUser %d differs from the image's USER %s", v.dir, *sc.RunAsUser, user)
			}
			for _, p := range c.ctr.Ports {
				if !slices.Contains(exposed, p.ContainerPort) {
					t.Errorf("%s: container port %s (%d) is not in the image's EXPOSE %v", v.dir, p.Name, p.ContainerPort, exposed)
				}
			}
			if got, want := flagValue(cmdArgs, "--config"), flagValue(c.ctr.Args, "--config"); got != want {
				t.Errorf("%s: the image's CMD reads %s, the Deployment %s", v.dir, got, want)
			}
		}
	})

	t.Run("no ADD", func(t *testing.T) {
		// ADD fetches URLs and unpacks archives; the image is built from the
		// context only, with COPY.
		for _, s := range d.stages {
			for _, cmd := range s.Commands {
				if a, ok := cmd.(*instructions.AddCommand); ok {
					t.Errorf("stage %s: ADD %q; use COPY", s.Name, a.SourcePaths)
				}
			}
		}
	})
}

// exposePorts reads one EXPOSE argument: 9092, 9092/tcp or 9100-9105.
func exposePorts(spec string) ([]int32, error) {
	spec, proto, _ := strings.Cut(spec, "/")
	if proto != "" && proto != "tcp" {
		return nil, fmt.Errorf("EXPOSE %s/%s: kseal serves TCP", spec, proto)
	}
	lo, hi, isRange := strings.Cut(spec, "-")
	if !isRange {
		hi = lo
	}
	a, err1 := strconv.Atoi(lo)
	b, err2 := strconv.Atoi(hi)
	if err1 != nil || err2 != nil || a < 1 || b > 65535 || a > b {
		return nil, fmt.Errorf("EXPOSE %s: not a port or range", spec)
	}
	var ports []int32
	for p := a; p <= b; p++ {
		ports = append(ports, int32(p))
	}
	return ports, nil
}

// goModVersion is the go directive of kseal's go.mod.
func goModVersion(t *testing.T) string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go "); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatal("go.mod has no go directive")
	return ""
}

// compareVersions compares dotted numeric versions ("1.26" < "1.26.8").
// A tag with a suffix (1.26.8-bookworm) is compared by its number.
func compareVersions(a, b string) int {
	num := func(s string) []int {
		s, _, _ = strings.Cut(s, "-")
		var out []int
		for _, p := range strings.Split(s, ".") {
			n, err := strconv.Atoi(p)
			if err != nil {
				return nil
			}
			out = append(out, n)
		}
		return out
	}
	x, y := num(a), num(b)
	if x == nil {
		return -1 // not a version: treat as too old
	}
	for len(x) < len(y) {
		x = append(x, 0)
	}
	for len(y) < len(x) {
		y = append(y, 0)
	}
	return slices.Compare(x, y)
}

// buildInputs lists, relative to the repository, every file `go build
// ./cmd/kseal` reads from kseal's own module, for the image's platform.
func buildInputs(t *testing.T) []string {
	t.Helper()
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{if not .Standard}}{{.Dir}}{{range .GoFiles}}	{{.}}{{end}}{{range .EmbedFiles}}	{{.}}{{end}}{{end}}`, "./cmd/kseal")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	files := []string{"go.mod", "go.sum"}
	for line := range strings.Lines(string(out)) {
		fields := strings.Split(strings.TrimRight(line, "\n"), "\t")
		rel, err := filepath.Rel(root, fields[0])
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a dependency: downloaded by go mod download
		}
		for _, f := range fields[1:] {
			files = append(files, filepath.ToSlash(filepath.Join(rel, f)))
		}
	}
	if len(files) < 10 {
		t.Fatalf("go list found only %v", files)
	}
	return files
}

// checkCopiesBuildInputs: the build stage's COPY instructions bring in
// every file the binary is built from.
func checkCopiesBuildInputs(t *testing.T, build instructions.Stage) {
	var sources []string
	for _, cmd := range build.Commands {
		if c, ok := cmd.(*instructions.CopyCommand); ok && c.From == "" {
			for _, s := range c.SourcePaths {
				sources = append(sources, strings.TrimSuffix(strings.TrimPrefix(s, "./"), "/"))
			}
		}
	}
	var missing []string
	for _, f := range buildInputs(t) {
		if !slices.ContainsFunc(sources, func(s string) bool { return f == s || strings.HasPrefix(f, s+"/") }) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		t.Errorf("the build stage COPYs %q, which leaves out %d build input(s): %s", sources, len(missing), summary(missing))
	}
}

// summary lists the first few of many paths.
func summary(paths []string) string {
	const n = 5
	if len(paths) <= n {
		return strings.Join(paths, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(paths[:n], ", "), len(paths)-n)
}

// TestDockerignore: the build context keeps every build input and drops
// local state, matched with the library Docker and BuildKit use.
func TestDockerignore(t *testing.T) {
	f, err := os.Open(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}
	excluded := func(p string) bool {
		m, err := pm.MatchesOrParentMatches(p)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	var dropped []string
	for _, f := range buildInputs(t) {
		if excluded(f) {
			dropped = append(dropped, f)
		}
	}
	if len(dropped) > 0 {
		t.Errorf(".dockerignore excludes %d file(s) the build needs: %s", len(dropped), summary(dropped))
	}
	// The Dockerfile needs none of these; some hold downloads, keys or a
	// 30 MB binary that would only slow every build down.
	for _, f := range []string{".git/config", ".cache/x", "kseal", "bin/kseal", "deploy/kubernetes/deployment.yaml",
		"internal/config/config_test.go", "cmd/kseal/testdata/x", "test/integration/x.go", "keys.json"} {
		if !excluded(f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}
