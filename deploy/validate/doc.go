// Package validate holds tests, and nothing else, that check kseal's
// deployment files where no cluster and no container engine is available:
//
//   - every Kubernetes manifest under deploy/kubernetes decodes strictly into
//     the real k8s.io/api types (an unknown or misspelt field is an error),
//     and the objects agree with each other and with kseal's config (probes on
//     the admin port, every container port named and behind a Service, file
//     paths of kseal.yaml mounted from the Secret that holds them, grace
//     period longer than preStop plus drainTimeout, non-root, limits set);
//   - the ConfigMaps' kseal.yaml pass `kseal validate`, run from a binary
//     built the way the Dockerfile builds it (static, CGO off);
//   - the Dockerfile parses with BuildKit's own parser and linter and keeps
//     its promises (multi-stage, static build, non-root, no remote ADD), and
//     .dockerignore keeps every file the build needs;
//   - the Helm chart under deploy/helm renders with Helm's own library for
//     its defaults and each example values file, and the output passes the
//     same checks as the manifests (and kseal validate);
//   - the Grafana dashboard's queries name only metrics kseal exports, with
//     labels they have; README's metrics table, which says what kseal
//     exports, agrees with the code and with a running kseal's /metrics.
//
// It is its own module so that kseal's module never depends on k8s.io,
// BuildKit or Helm. Run it with `cd deploy/validate && go test ./...`. It must never
// contact a cluster or a registry: everything it checks is on disk.
package validate
