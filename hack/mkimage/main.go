// Command mkimage writes a container image as a docker-archive tarball (what
// `docker save` writes, and what `ctr images import`, `docker load` and `kind
// load image-archive` read) without Docker or a registry, with
// go-containerregistry.
//
// Its defaults build Sluice's image the way the Dockerfile's final stage lays it
// out (distroless/static:nonroot, /manager and /worker, USER 65532:65532,
// ENTRYPOINT /manager) from the static binaries of `make build`:
//
//	go run ./hack/mkimage -o bin/image/sluice.tar -tag sluice:dev \
//	  -add bin/manager:/manager -add bin/worker:/worker
//
// It lives in hack/ rather than cmd/ because it is a development tool, not part
// of the product (cmd/ holds what the image ships). The local cluster builds its
// pause image with it too:
//
//	go run ./hack/mkimage -base none -user "" -entrypoint /pause \
//	  -tag registry.k8s.io/pause:3.10 -o pause.tar -add bin/pause:/pause
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The Dockerfile's final stage; TestDefaultsMatchDockerfile keeps them in step.
const (
	defaultUser       = "65532:65532"
	defaultEntrypoint = "/manager"
)

type addFlags []file

func (a *addFlags) String() string { return fmt.Sprint(len(*a), " files") }
func (a *addFlags) Set(v string) error {
	f, err := parseAdd(v)
	if err != nil {
		return err
	}
	*a = append(*a, f)
	return nil
}

func main() {
	var (
		out        = flag.String("o", "", "the docker-archive tarball to write (required)")
		tag        = flag.String("tag", "sluice:dev", "the image's name and tag")
		base       = flag.String("base", "nonroot", "the base layout: nonroot (distroless/static:nonroot) or none (only the -add files)")
		caBundle   = flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "host CA bundle copied into the nonroot base; empty: none")
		user       = flag.String("user", defaultUser, "the image's USER")
		entrypoint = flag.String("entrypoint", defaultEntrypoint, "the image's ENTRYPOINT (one program, no arguments)")
		arch       = flag.String("arch", runtime.GOARCH, "the architecture the -add binaries are built for")
		adds       addFlags
	)
	flag.Var(&adds, "add", "HOST_PATH:/IMAGE_PATH, a program to copy into the image (repeatable)")
	flag.Parse()
	if err := run(*out, *tag, *base, *caBundle, *user, *entrypoint, *arch, adds); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

func run(out, tag, base, caBundle, user, entrypoint, arch string, adds []file) error {
	if out == "" || len(adds) == 0 {
		return errors.New("-o and at least one -add are required")
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		return err
	}
	s := spec{files: adds, user: user, arch: arch}
	if entrypoint != "" {
		s.entrypoint = []string{entrypoint}
	}
	switch base {
	case "nonroot":
		if caBundle != "" {
			if _, err := os.Stat(caBundle); err != nil {
				return fmt.Errorf("%w (install Debian's ca-certificates, or pass -ca-bundle= for none)", err)
			}
		}
		s.base, s.env, s.workdir = nonrootBase(caBundle), nonrootConfig.env, nonrootConfig.workdir
	case "none":
	default:
		return fmt.Errorf("-base %q: want nonroot or none", base)
	}
	img, err := build(s)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	// Write next to the target and rename, so a reader never sees half a tarball.
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, out); err != nil {
		return err
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s %s\n", out, tag, strings.TrimPrefix(digest.String(), "sha256:")[:12])
	return nil
}
