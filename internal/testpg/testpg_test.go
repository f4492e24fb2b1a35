package testpg

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Loopback addresses other than 127.0.0.1 stand in for the bridge address
// (listen) and a pod (client): the test needs no cluster.
const (
	otherListen = "127.0.0.2"
	otherClient = "127.0.0.3"
)

// connectFrom connects to dsn with the client's source address bound to from,
// as a pod's connection arrives from the pod's address.
func connectFrom(ctx context.Context, dsn, from string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	cfg.DialFunc = d.DialContext
	return pgx.ConnectConfig(ctx, cfg)
}

func TestListenOnAndAllowClientsLetAnotherNetworkIn(t *testing.T) {
	s, err := Start(ListenOn(otherListen), AllowClients(otherClient+"/32"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, host := range []string{"127.0.0.1", otherListen} {
		conn, err := connectFrom(ctx, s.DSNAt(host, "postgres"), otherClient)
		if err != nil {
			t.Fatalf("connecting to %s from %s: %v", host, otherClient, err)
		}
		var one int
		if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
			t.Fatalf("SELECT 1 at %s: %d, %v", host, one, err)
		}
		_ = conn.Close(ctx)
	}
}

func TestByDefaultOnlyLoopbackClientsOn127001(t *testing.T) {
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Stop() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	conn, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatalf("a loopback client must get in: %v", err)
	}
	_ = conn.Close(ctx)

	if conn, err := connectFrom(ctx, s.DSN("postgres"), otherClient); err == nil {
		_ = conn.Close(ctx)
		t.Fatalf("a client from %s got in without AllowClients", otherClient)
	} else if !strings.Contains(err.Error(), "pg_hba.conf") {
		t.Fatalf("client from %s refused with %v, want the pg_hba.conf refusal", otherClient, err)
	}
	if conn, err := pgx.Connect(ctx, s.DSNAt(otherListen, "postgres")); err == nil {
		_ = conn.Close(ctx)
		t.Fatalf("the server listens on %s without ListenOn", otherListen)
	}
}

func TestOptionsRefuseWhatIsNotAnAddress(t *testing.T) {
	for name, opt := range map[string]Option{
		"a host name":      ListenOn("localhost"),
		"an empty address": ListenOn(""),
		"a bare address":   AllowClients("10.244.0.0"),
		"a bad prefix":     AllowClients("10.244.0.0/33"),
	} {
		t.Run(name, func(t *testing.T) {
			if s, err := Start(opt); err == nil {
				_ = s.Stop()
				t.Fatal("Start succeeded, want an error")
			}
		})
	}
}

func TestListenAddressesAndHBALines(t *testing.T) {
	for _, tc := range []struct {
		o          options
		listen, hb string
	}{
		{options{}, "127.0.0.1", ""},
		{options{listen: []string{"10.244.0.1"}, clients: []string{"10.244.0.0/24"}}, "127.0.0.1,10.244.0.1", "host all all 10.244.0.0/24 trust\n"},
		{options{clients: []string{"10.0.0.0/8", "::1/128"}}, "127.0.0.1", "host all all 10.0.0.0/8 trust\nhost all all ::1/128 trust\n"},
	} {
		if got := tc.o.listenAddresses(); got != tc.listen {
			t.Errorf("%+v: listen_addresses %q, want %q", tc.o, got, tc.listen)
		}
		if got := tc.o.hbaLines(); got != tc.hb {
			t.Errorf("%+v: pg_hba lines %q, want %q", tc.o, got, tc.hb)
		}
	}
}
