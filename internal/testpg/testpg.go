// Package testpg starts a real PostgreSQL server for tests: initdb into a temp
// dir, pg_ctl start on a free loopback port, stop and remove on Stop. By default
// it listens on 127.0.0.1 only and lets in loopback clients; ListenOn and
// AllowClients open it to a local cluster's pods (test/e2e). The
// server binaries come from the system (Debian's postgresql package); when
// they are missing, Start fails and says how to install them. As root (CI), the
// server runs as the "postgres" user, because PostgreSQL refuses to run as root.
package testpg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is a running PostgreSQL server.
type Server struct {
	dir, bin string
	port     int
	asUser   string
}

// options are what Start's Options set.
type options struct {
	listen  []string // addresses besides 127.0.0.1
	clients []string // CIDRs let in besides loopback
}

// Option changes how Start runs the server.
type Option func(*options) error

// ListenOn makes the server listen on these IP addresses too, besides
// 127.0.0.1: e.g. the local cluster's bridge gateway 10.244.0.1, the address
// pods reach the host on. Only IP addresses: a name could resolve to an
// address outside this machine.
func ListenOn(addrs ...string) Option {
	return func(o *options) error {
		for _, a := range addrs {
			if net.ParseIP(a) == nil {
				return fmt.Errorf("testpg: listen address %q is not an IP address", a)
			}
			o.listen = append(o.listen, a)
		}
		return nil
	}
}

// AllowClients lets clients from these networks (CIDR, e.g. the pod network
// 10.244.0.0/24) connect without a password, as loopback clients do: one
// pg_hba.conf line "host all all CIDR trust" each. Without it PostgreSQL
// refuses them ("no pg_hba.conf entry for host").
func AllowClients(cidrs ...string) Option {
	return func(o *options) error {
		for _, c := range cidrs {
			if _, _, err := net.ParseCIDR(c); err != nil {
				return fmt.Errorf("testpg: client network %q: %w", c, err)
			}
			o.clients = append(o.clients, c)
		}
		return nil
	}
}

// listenAddresses is the server's listen_addresses setting.
func (o options) listenAddresses() string {
	return strings.Join(append([]string{"127.0.0.1"}, o.listen...), ",")
}

// hbaLines are the pg_hba.conf lines AllowClients adds.
func (o options) hbaLines() string {
	var b strings.Builder
	for _, c := range o.clients {
		fmt.Fprintf(&b, "host all all %s trust\n", c)
	}
	return b.String()
}

// binDir finds pg_ctl and initdb: $PG_BIN, or the newest /usr/lib/postgresql/*/bin.
func binDir() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "pg_ctl")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("PostgreSQL server binaries not found: install them with `make postgres` " +
		"(apt-get install postgresql) or point PG_BIN at a folder holding initdb and pg_ctl")
}

// Start initializes and starts a server.
func Start(opts ...Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, err
		}
	}
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "sluice-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs the postgres user (from the postgresql package): %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		s.asUser = "postgres"
	}
	if s.port, err = freePort(o.listen); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	if out, err := s.run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync"); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if lines := o.hbaLines(); lines != "" {
		if err := appendFile(filepath.Join(data, "pg_hba.conf"), lines); err != nil {
			return nil, err
		}
	}
	serverOpts := fmt.Sprintf("-p %d -k %s -c listen_addresses=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200", s.port, dir, o.listenAddresses())
	if out, err := s.run("pg_ctl", "-D", data, "-o", serverOpts, "-l", filepath.Join(dir, "server.log"), "-w", "-t", "60", "start"); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		return nil, fmt.Errorf("pg_ctl start: %w\n%s\n%s", err, out, log)
	}
	return s, nil
}

func (s *Server) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.asUser != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.asUser, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = s.dir
	return cmd.CombinedOutput()
}

// DSN of a database on the server, at 127.0.0.1.
func (s *Server) DSN(db string) string { return s.DSNAt("127.0.0.1", db) }

// DSNAt is the DSN of a database at another address the server listens on
// (ListenOn), e.g. the one pods connect to.
func (s *Server) DSNAt(host, db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", net.JoinHostPort(host, strconv.Itoa(s.port)), db)
}

// Port is the port the server listens on.
func (s *Server) Port() int { return s.port }

// CreateDatabase makes a fresh database and returns its DSN.
func (s *Server) CreateDatabase(ctx context.Context, name string) (string, error) {
	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return "", err
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", err
	}
	return s.DSN(name), nil
}

// NewDatabase gives a test a fresh database named name with the statements ddl
// run in it, and a connection to it that is closed when the test ends.
func (s *Server) NewDatabase(tb testing.TB, name string, ddl ...string) (dsn string, conn *pgx.Conn) {
	tb.Helper()
	ctx := context.Background()
	dsn, err := s.CreateDatabase(ctx, name)
	if err != nil {
		tb.Fatal(err)
	}
	conn, err = pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close(ctx) })
	for _, stmt := range ddl {
		if _, err := conn.Exec(ctx, stmt); err != nil {
			tb.Fatal(err)
		}
	}
	return dsn, conn
}

// Stop stops the server at once and removes its files.
func (s *Server) Stop() error {
	_, err := s.run("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "-t", "20", "stop")
	time.Sleep(100 * time.Millisecond)
	if rmErr := os.RemoveAll(s.dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// Dir is the server's folder (for logs when a test fails).
func (s *Server) Dir() string { return s.dir }

// appendFile appends text to a file the server's user owns (initdb made it).
func appendFile(path, text string) error {
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// freePort finds a port free on 127.0.0.1 and on every extra address.
func freePort(extra []string) (int, error) {
	var lastErr error
	for range 10 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		lastErr = portFreeOn(extra, port)
		_ = ln.Close()
		if lastErr == nil {
			return port, nil
		}
	}
	return 0, fmt.Errorf("testpg: no port free on 127.0.0.1 and %v: %w", extra, lastErr)
}

func portFreeOn(addrs []string, port int) error {
	for _, a := range addrs {
		ln, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		_ = ln.Close()
	}
	return nil
}

// Ident quotes a name for SQL.
func Ident(name string) string { return pgx.Identifier(strings.Split(name, ".")).Sanitize() }
