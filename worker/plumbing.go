package worker

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluice-dev/sluice/internal/kafka"
	"github.com/sluice-dev/sluice/internal/workerconfig"
	"github.com/sluice-dev/sluice/worker/sink"
)

// connFromConfig reads the mounted credential files named in the config.
func connFromConfig(k workerconfig.Kafka) (kafka.Conn, error) {
	conn := kafka.Conn{Brokers: k.BootstrapServers}
	read := func(field, path string) ([]byte, error) {
		if path == "" {
			return nil, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("kafka.%s: %w", field, err)
		}
		return b, nil
	}
	var err error
	if t := k.TLS; t != nil {
		conn.TLS = &kafka.TLS{}
		if conn.TLS.CA, err = read("tls.caFile", t.CAFile); err != nil {
			return conn, err
		}
		if conn.TLS.Cert, err = read("tls.certFile", t.CertFile); err != nil {
			return conn, err
		}
		if conn.TLS.Key, err = read("tls.keyFile", t.KeyFile); err != nil {
			return conn, err
		}
	}
	if s := k.SASL; s != nil {
		user, err := read("sasl.usernameFile", s.UsernameFile)
		if err != nil {
			return conn, err
		}
		pass, err := read("sasl.passwordFile", s.PasswordFile)
		if err != nil {
			return conn, err
		}
		conn.SASL = &kafka.SASL{Mechanism: s.Mechanism, Username: strings.TrimSpace(string(user)), Password: strings.TrimRight(string(pass), "\r\n")}
	}
	return conn, nil
}

// openSink builds the configured sink.
func openSink(ctx context.Context, cfg *workerconfig.Config, producer func() *kgo.Client) (sink.Sink, error) {
	s := cfg.Sink
	switch {
	case s.HTTP != nil:
		o := httpOptions(s.HTTP)
		if cfg.Processing.Concurrent() {
			o.Concurrency = int(cfg.Processing.MaxInFlight)
		}
		return sink.NewHTTPWith(o), nil
	case s.Postgres != nil:
		dsn, err := os.ReadFile(s.Postgres.DSNFile)
		if err != nil {
			return nil, fmt.Errorf("sink.postgres.dsnFile: %w", err)
		}
		return sink.NewPostgres(ctx, sink.PostgresOptions{
			DSN: strings.TrimSpace(string(dsn)), Table: s.Postgres.Table,
			KeyColumn: s.Postgres.KeyColumn, PayloadColumn: s.Postgres.PayloadColumn,
			ExactlyOnce: cfg.Delivery.Semantics == workerconfig.ExactlyOnce,
		})
	case s.Kafka != nil:
		return sink.NewKafka(producer, s.Kafka.Topic), nil
	case s.Log != nil:
		return sink.NewLog(os.Stdout, s.Log.Format), nil
	}
	return nil, fmt.Errorf("sink: none configured")
}

// clientID names this member in broker logs and group listings: the pod name.
func clientID() string {
	if n := os.Getenv(workerconfig.PodNameEnv); n != "" {
		return "sluice-worker-" + n
	}
	if h, err := os.Hostname(); err == nil {
		return "sluice-worker-" + h
	}
	return ""
}

// kgoLogger routes franz-go's logs to slog: warnings and errors by default,
// more with SLUICE_KAFKA_LOG_LEVEL=info or debug (for chasing a client problem).
// The level is read once: franz-go asks for it before every log line.
type kgoLogger struct {
	l     *slog.Logger
	level kgo.LogLevel
}

func newKgoLogger(l *slog.Logger) kgoLogger {
	return kgoLogger{l: l, level: kgoLogLevel(os.Getenv("SLUICE_KAFKA_LOG_LEVEL"))}
}

func (k kgoLogger) Level() kgo.LogLevel { return k.level }

func kgoLogLevel(s string) kgo.LogLevel {
	switch strings.ToLower(s) {
	case "debug":
		return kgo.LogLevelDebug
	case "info":
		return kgo.LogLevelInfo
	case "error":
		return kgo.LogLevelError
	}
	return kgo.LogLevelWarn
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	switch level {
	case kgo.LogLevelError:
		k.l.Error(msg, keyvals...)
	case kgo.LogLevelWarn:
		k.l.Warn(msg, keyvals...)
	case kgo.LogLevelInfo:
		k.l.Info(msg, keyvals...)
	default:
		k.l.Info("debug: "+msg, keyvals...)
	}
}

// httpOptions are the HTTP sink's options from its config.
func httpOptions(h *workerconfig.HTTPSink) sink.HTTPOptions {
	o := sink.HTTPOptions{
		URL: h.URL, Timeout: h.Timeout.Duration, BearerTokenFile: h.BearerTokenFile,
		HealthURL: h.Health.URL, HealthMethod: h.Health.Method, HealthDisabled: h.Health.Disabled,
	}
	if b := h.BasicAuth; b != nil {
		o.BasicAuthUsernameFile, o.BasicAuthPasswordFile = b.UsernameFile, b.PasswordFile
	}
	if len(h.Headers) > 0 {
		o.Headers = make(map[string]string, len(h.Headers))
		for _, hd := range h.Headers {
			o.Headers[hd.Name] = hd.File
		}
	}
	return o
}
