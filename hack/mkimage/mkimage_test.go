package main

import (
	"archive/tar"
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func TestParseAdd(t *testing.T) {
	for _, tc := range []struct {
		in      string
		src     string
		dst     string
		wantErr bool
	}{
		{in: "bin/manager:/manager", src: "bin/manager", dst: "/manager"},
		{in: "/abs/worker:/usr/local/bin/worker", src: "/abs/worker", dst: "/usr/local/bin/worker"},
		{in: "bin/manager", wantErr: true},
		{in: ":/manager", wantErr: true},
		{in: "bin/manager:manager", wantErr: true},
		{in: "bin/manager:/", wantErr: true},
		{in: "bin/manager:/a/../manager", wantErr: true},
	} {
		f, err := parseAdd(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("parseAdd(%q) = %+v, want an error", tc.in, f)
			}
			continue
		}
		if err != nil || f.source != tc.src || f.path != tc.dst || f.mode != 0o755 || f.uid != 0 {
			t.Errorf("parseAdd(%q) = %+v, %v; want %s -> %s, 0755, root", tc.in, f, err, tc.src, tc.dst)
		}
	}
}

func TestWithParentsAddsDirectoriesBeforeTheirContent(t *testing.T) {
	got, err := withParents([]file{
		{path: "/usr/local/bin/worker", mode: 0o755},
		{path: "/etc/passwd", mode: 0o644},
		{path: "/etc", mode: 0o700, dir: true}, // given: kept as given, not replaced
	})
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for _, f := range got {
		paths = append(paths, f.path)
		if f.path == "/etc" && f.mode != 0o700 {
			t.Errorf("/etc mode = %o, want the given 0700", f.mode)
		}
	}
	want := []string{"/etc", "/etc/passwd", "/usr", "/usr/local", "/usr/local/bin", "/usr/local/bin/worker"}
	if !slices.Equal(paths, want) {
		t.Errorf("paths = %v, want %v", paths, want)
	}

	if _, err := withParents([]file{{path: "/a"}, {path: "/a"}}); err == nil {
		t.Error("a path given twice: want an error")
	}
	if _, err := withParents([]file{{path: "/a"}, {path: "/a/b"}}); err == nil {
		t.Error("a file inside a file: want an error")
	}
}

// fakeBinaries writes two small files standing in for bin/manager and bin/worker.
func fakeBinaries(t *testing.T, workerContent string) []file {
	dir := t.TempDir()
	mgr, wrk := filepath.Join(dir, "manager"), filepath.Join(dir, "worker")
	if err := os.WriteFile(mgr, []byte("manager binary"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wrk, []byte(workerContent), 0o600); err != nil {
		t.Fatal(err)
	}
	return []file{binary(mgr, "/manager"), binary(wrk, "/worker")}
}

// writeAndLoad runs mkimage with its defaults and reads the tarball back.
func writeAndLoad(t *testing.T, adds []file, caBundle string) v1.Image {
	t.Helper()
	out := filepath.Join(t.TempDir(), "img.tar")
	if err := run(out, "sluice:test", "nonroot", caBundle, defaultUser, defaultEntrypoint, "amd64", adds); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag("sluice:test")
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestImageHasTheDockerfileFinalStageLayout(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	img := writeAndLoad(t, fakeBinaries(t, "worker binary"), ca)

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != "65532:65532" || !slices.Equal(cfg.Config.Entrypoint, []string{"/manager"}) ||
		cfg.Config.WorkingDir != "/home/nonroot" || cfg.OS != "linux" || cfg.Architecture != "amd64" {
		t.Errorf("config = %+v (os %s arch %s); want USER 65532:65532, ENTRYPOINT /manager, WORKDIR /home/nonroot, linux/amd64",
			cfg.Config, cfg.OS, cfg.Architecture)
	}
	if !slices.Contains(cfg.Config.Env, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt") {
		t.Errorf("env = %v, want SSL_CERT_FILE", cfg.Config.Env)
	}

	files := extract(t, img)
	for _, want := range []struct {
		path     string
		mode     int64
		uid      int
		contains string
	}{
		{path: "manager", mode: 0o755, contains: "manager binary"},
		{path: "worker", mode: 0o755, contains: "worker binary"},
		{path: "etc/passwd", mode: 0o644, contains: "nonroot:x:65532:65532:nonroot:/home/nonroot:"},
		{path: "etc/group", mode: 0o644, contains: "nonroot:x:65532:"},
		{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, contains: "BEGIN CERTIFICATE"},
		{path: "etc/ssl/certs", mode: 0o755},
		{path: "tmp", mode: 0o1777},
		{path: "home/nonroot", mode: 0o700, uid: 65532},
	} {
		got, ok := files[want.path]
		if !ok {
			t.Errorf("%s missing from the image", want.path)
			continue
		}
		if got.hdr.Mode != want.mode || got.hdr.Uid != want.uid {
			t.Errorf("%s: mode %o uid %d, want mode %o uid %d", want.path, got.hdr.Mode, got.hdr.Uid, want.mode, want.uid)
		}
		if !strings.Contains(got.content, want.contains) {
			t.Errorf("%s = %q, want it to contain %q", want.path, got.content, want.contains)
		}
	}
}

func TestSameInputsGiveTheSameImage(t *testing.T) {
	adds := fakeBinaries(t, "worker v1")
	a, b := writeAndLoad(t, adds, ""), writeAndLoad(t, adds, "")
	if digest(t, a) != digest(t, b) {
		t.Errorf("two builds of the same files: digests %s and %s", digest(t, a), digest(t, b))
	}

	changed := writeAndLoad(t, fakeBinaries(t, "worker v2"), "")
	if digest(t, changed) == digest(t, a) {
		t.Error("a changed worker binary did not change the image digest")
	}
	la, lc := layers(t, a), layers(t, changed)
	if len(la) != 2 || len(lc) != 2 {
		t.Fatalf("layers: %d and %d, want 2 (base, programs)", len(la), len(lc))
	}
	if la[0] != lc[0] {
		t.Error("the base layer changed with the programs; it should be shared")
	}
}

// TestDefaultsMatchDockerfile pins mkimage's defaults to the Dockerfile's final
// stage, the one place the image is otherwise described.
func TestDefaultsMatchDockerfile(t *testing.T) {
	f, err := os.Open("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	var from, user, entrypoint string
	var copied []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "FROM": // a new stage: only the last one counts
			from, user, entrypoint, copied = fields[1], "", "", nil
		case "USER":
			user = fields[1]
		case "ENTRYPOINT":
			var ep []string
			if err := json.Unmarshal([]byte(strings.TrimPrefix(sc.Text(), "ENTRYPOINT")), &ep); err != nil {
				t.Fatalf("ENTRYPOINT: %v", err)
			}
			entrypoint = strings.Join(ep, " ")
		case "COPY":
			copied = append(copied, fields[len(fields)-1])
		}
	}
	if from != "gcr.io/distroless/static:nonroot" {
		t.Errorf("final stage FROM %s: update nonrootBase to match it", from)
	}
	if user != defaultUser || entrypoint != defaultEntrypoint {
		t.Errorf("Dockerfile USER %q ENTRYPOINT %q; mkimage defaults %q %q", user, entrypoint, defaultUser, defaultEntrypoint)
	}
	if !slices.Equal(copied, []string{"/manager", "/worker"}) {
		t.Errorf("Dockerfile copies %v; the Makefile's image target adds /manager and /worker", copied)
	}
}

type entry struct {
	hdr     *tar.Header
	content string
}

func extract(t *testing.T, img v1.Image) map[string]entry {
	t.Helper()
	rc := mutate.Extract(img)
	defer func() { _ = rc.Close() }()
	out := map[string]entry{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		// Directory names keep or lose their trailing slash depending on the writer.
		out[strings.TrimSuffix(hdr.Name, "/")] = entry{hdr: hdr, content: string(b)}
	}
}

func digest(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func layers(t *testing.T, img v1.Image) []string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		d, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d.String())
	}
	return out
}
