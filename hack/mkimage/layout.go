package main

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// file is one entry of an image layer.
type file struct {
	path     string // absolute path inside the image
	mode     int64  // permission bits as in tar, e.g. 0o755, 0o1777 (sticky) for /tmp
	uid, gid int
	dir      bool
	content  []byte // a regular file's bytes, given inline...
	source   string // ...or copied from this host path when set
}

// nonrootUID is distroless' nonroot user, the USER of the Dockerfile's final stage.
const nonrootUID = 65532

// nonrootBase is the part of gcr.io/distroless/static:nonroot that Sluice's
// binaries rely on: the users (so that USER 65532 has a name and a home), a
// world-writable /tmp and, when caBundle is set, the CA certificates that TLS
// clients (the HTTP sink, Kafka without a caSecretRef) verify servers with.
func nonrootBase(caBundle string) []file {
	files := []file{
		{path: "/etc", mode: 0o755, dir: true},
		{path: "/etc/passwd", mode: 0o644, content: []byte(
			"root:x:0:0:root:/root:/sbin/nologin\n" +
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
				fmt.Sprintf("nonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", nonrootUID, nonrootUID))},
		{path: "/etc/group", mode: 0o644, content: []byte(
			"root:x:0:\nnobody:x:65534:\n" + fmt.Sprintf("nonroot:x:%d:\n", nonrootUID))},
		{path: "/home", mode: 0o755, dir: true},
		{path: "/home/nonroot", mode: 0o700, uid: nonrootUID, gid: nonrootUID, dir: true},
		{path: "/tmp", mode: 0o1777, dir: true},
	}
	if caBundle != "" {
		files = append(files, file{path: caBundlePath, mode: 0o644, source: caBundle})
	}
	return files
}

// caBundlePath is where distroless (and Debian) keep the CA bundle; Go's crypto/x509
// looks there, and SSL_CERT_FILE names it for other programs.
const caBundlePath = "/etc/ssl/certs/ca-certificates.crt"

// nonrootConfig is the base image's config: distroless' environment and working
// directory. The user and entrypoint come from the Dockerfile (flags).
var nonrootConfig = struct {
	env     []string
	workdir string
}{
	env:     []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "SSL_CERT_FILE=" + caBundlePath},
	workdir: "/home/nonroot",
}

// binary is a program copied into the image from a host path, owned by root and
// executable by everyone, like Docker's COPY of a built binary.
func binary(src, dst string) file {
	return file{path: dst, mode: 0o755, source: src}
}

// parseAdd parses an -add flag value "HOST_PATH:IMAGE_PATH".
func parseAdd(v string) (file, error) {
	src, dst, ok := strings.Cut(v, ":")
	if !ok || src == "" || !path.IsAbs(dst) || path.Clean(dst) != dst || dst == "/" {
		return file{}, fmt.Errorf("-add %q: want HOST_PATH:/ABSOLUTE/IMAGE/PATH", v)
	}
	return binary(src, dst), nil
}

// withParents returns files sorted by path, with every missing parent directory
// added (root-owned, 0755), so that the tar lists each directory before its content.
func withParents(files []file) ([]file, error) {
	byPath := map[string]file{}
	for _, f := range files {
		if _, dup := byPath[f.path]; dup {
			return nil, fmt.Errorf("%s is in the image twice", f.path)
		}
		byPath[f.path] = f
	}
	for _, f := range files {
		for dir := path.Dir(f.path); dir != "/"; dir = path.Dir(dir) {
			if p, ok := byPath[dir]; ok {
				if !p.dir {
					return nil, fmt.Errorf("%s is a file but %s is inside it", dir, f.path)
				}
				continue
			}
			byPath[dir] = file{path: dir, mode: 0o755, dir: true}
		}
	}
	out := make([]file, 0, len(byPath))
	for _, f := range byPath {
		out = append(out, f)
	}
	slices.SortFunc(out, func(a, b file) int { return strings.Compare(a.path, b.path) })
	return out, nil
}

// writeLayer writes files as an uncompressed layer tar. Every timestamp is the
// epoch and entries are in path order, so the same inputs give the same digest:
// an unchanged base layer is shared between builds and pulls nothing new.
func writeLayer(w io.Writer, files []file) error {
	files, err := withParents(files)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, f := range files {
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(f.path, "/"),
			Mode:    f.mode,
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: time.Unix(0, 0),
			Format:  tar.FormatPAX,
		}
		if f.dir {
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		hdr.Typeflag = tar.TypeReg
		if err := writeRegular(tw, hdr, f); err != nil {
			return err
		}
	}
	return tw.Close()
}

func writeRegular(tw *tar.Writer, hdr *tar.Header, f file) error {
	if f.source == "" {
		hdr.Size = int64(len(f.content))
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		_, err := tw.Write(f.content)
		return err
	}
	src, err := os.Open(f.source)
	if err != nil {
		return err
	}
	defer func() { _ = src.Close() }()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", f.source)
	}
	hdr.Size = st.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.Copy(tw, src); err != nil {
		return fmt.Errorf("%s: %w", f.source, err)
	}
	return nil
}
