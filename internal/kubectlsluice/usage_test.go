package kubectlsluice

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-dev/sluice/internal/testenv"
)

// TestREADMEShowsTheHelp: the README's copy of `kubectl sluice help` is the
// plugin's.
func TestREADMEShowsTheHelp(t *testing.T) {
	root, err := testenv.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "$ kubectl sluice help\n"+Usage) {
		t.Fatalf("README.md's `kubectl sluice help` differs from the plugin's Usage:\n%s", Usage)
	}
}
