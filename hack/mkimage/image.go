package main

import (
	"io"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// spec is what the image is made of.
type spec struct {
	base       []file // first layer (shared by every build when unchanged); may be empty
	files      []file // second layer: the programs
	user       string
	entrypoint []string
	env        []string
	workdir    string
	arch       string
}

// build assembles the image: a config with the epoch as creation time and one
// layer per non-empty file list. Layers are read from disk lazily, when the
// image is written.
func build(s spec) (v1.Image, error) {
	epoch := v1.Time{Time: time.Unix(0, 0).UTC()}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: s.arch,
		OS:           "linux",
		Created:      epoch,
		Config: v1.Config{
			User:       s.user,
			Entrypoint: s.entrypoint,
			Env:        s.env,
			WorkingDir: s.workdir,
		},
	})
	if err != nil {
		return nil, err
	}
	for _, files := range [][]file{s.base, s.files} {
		if len(files) == 0 {
			continue
		}
		layer, err := tarball.LayerFromOpener(layerOpener(files))
		if err != nil {
			return nil, err
		}
		if img, err = mutate.Append(img, mutate.Addendum{
			Layer:   layer,
			History: v1.History{Created: epoch, CreatedBy: "hack/mkimage"},
		}); err != nil {
			return nil, err
		}
	}
	return img, nil
}

// layerOpener streams the layer tar afresh on every call: go-containerregistry
// reads a layer several times (digest, diff ID, write), and a pipe avoids
// holding the binaries in memory or in a temporary file.
func layerOpener(files []file) tarball.Opener {
	return func() (io.ReadCloser, error) {
		r, w := io.Pipe()
		go func() { w.CloseWithError(writeLayer(w, files)) }()
		return r, nil
	}
}
