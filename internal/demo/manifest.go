package demo

import (
	"bytes"
	_ "embed"
	"fmt"
	"math"
	"strconv"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

//go:embed pipeline.yaml.tmpl
var pipelineTemplate string

// demoNamespace holds the demo's pipelines.
const demoNamespace = "demo"

// pipelineParams fill in the demo's manifest.
type pipelineParams struct {
	Name, Namespace, Topic string
	Bootstrap              string
	Sink                   string
	PerWorkerRate          int
	WarmupRate             int
	LagThreshold           int
	MaxReplicas            int
}

// demoPipelineParams sizes a pipeline for the load: each worker may deliver
// 2.5× the steady rate (one worker keeps up, with room), and the lag
// threshold is 7.5 s of steady ingest, so that the steady load runs on one
// worker and a spike of 10× needs four or more.
func demoPipelineParams(name string, cfg Config, bootstrap []string, sink string) pipelineParams {
	quoted := make([]string, len(bootstrap))
	for i, b := range bootstrap {
		quoted[i] = strconv.Quote(b)
	}
	perWorker := int(math.Ceil(cfg.Rate * 2.5))
	return pipelineParams{
		Name: name, Namespace: demoNamespace, Topic: name,
		Bootstrap:     strings.Join(quoted, ", "),
		Sink:          sink,
		PerWorkerRate: perWorker,
		WarmupRate:    max(perWorker/2, 1),
		LagThreshold:  int(math.Ceil(cfg.Rate * 7.5)),
		MaxReplicas:   cfg.Partitions,
	}
}

// sinkYAML is the spec.sink block (indented four spaces) for the chosen sink.
func sinkYAML(sink, url, pgSecret, pgTable string) string {
	switch sink {
	case sinkLog:
		return "    log: {format: JSON}"
	case sinkPostgres:
		return fmt.Sprintf("    postgres:\n      dsnSecretRef: {name: %s, key: dsn}\n      table: %s", pgSecret, pgTable)
	}
	return fmt.Sprintf("    http: {url: %q, timeout: 5s}", url)
}

// renderPipeline renders the manifest and parses it strictly, as the API
// server would read it.
func renderPipeline(p pipelineParams) ([]byte, *sluicev1.StreamPipeline, error) {
	t, err := template.New("pipeline").Option("missingkey=error").Parse(pipelineTemplate)
	if err != nil {
		return nil, nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, p); err != nil {
		return nil, nil, err
	}
	sp := &sluicev1.StreamPipeline{}
	if err := yaml.UnmarshalStrict(b.Bytes(), sp); err != nil {
		return nil, nil, fmt.Errorf("the demo's manifest: %w", err)
	}
	return b.Bytes(), sp, nil
}
