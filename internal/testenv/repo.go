package testenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

var repoRoot = sync.OnceValues(func() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("testenv: working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "scripts", "kafka.sh")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testenv: no repository root (go.mod with scripts/kafka.sh) above the working directory")
		}
		dir = parent
	}
})

// RepoRoot is the kseal checkout the tests run in (found by walking up from
// the working directory, which go test sets to the package's folder).
func RepoRoot() (string, error) { return repoRoot() }

// WorkDir is the git-ignored folder under the repository where clusters,
// configs and logs of a test run live (test/.work).
func WorkDir() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "test", ".work")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("testenv: create %s: %w", dir, err)
	}
	return dir, nil
}
