// Package modroot finds the module's root folder, for tests that need files
// outside their package (CRDs, samples, binaries to build).
package modroot

import (
	"errors"
	"os"
	"path/filepath"
)

// Find returns the folder holding go.mod, searching from the working directory up.
func Find() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}
