package controllers

import (
	"context"
	"encoding/json"
	"testing"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
)

// getTable asks the API server for the table `kubectl get` prints (the CRD's
// printer columns), as kubectl does.
func getTable(g Gomega, ns, name string) *metav1.Table {
	cfg := rest.CopyConfig(restConfig)
	cfg.GroupVersion = &sluicev1.GroupVersion
	cfg.APIPath = "/apis"
	cfg.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	rc, err := rest.RESTClientFor(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := rc.Get().Namespace(ns).Resource("streampipelines").Name(name).
		SetHeader("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io").
		Param("includeObject", "None").
		DoRaw(context.Background())
	g.Expect(err).NotTo(HaveOccurred())
	table := &metav1.Table{}
	g.Expect(json.Unmarshal(raw, table)).To(Succeed())
	return table
}

func TestKubectlGetShowsReadinessReplicasAndTheWideColumns(t *testing.T) {
	g := NewWithT(t)
	ns := newNamespace(t)
	sp := logPipeline(ns, "printed")
	sp.Spec.Scaling.MinReplicas = new(int32(2))
	create(t, sp)
	rollOut(t, sp)

	g.Eventually(func(g Gomega) {
		table := getTable(g, ns, "printed")
		cols := map[string]int{}
		for i, c := range table.ColumnDefinitions {
			cols[c.Name] = i
			// Priority 0 is the default view; 1 appears with -o wide.
			switch c.Name {
			case "Name", "Ready", "Replicas", "GroupType", "Lag", "DLQ", "Age":
				g.Expect(c.Priority).To(Equal(int32(0)), c.Name)
			case "Topic", "Group", "Rate", "Status":
				g.Expect(c.Priority).To(Equal(int32(1)), c.Name)
			}
		}
		g.Expect(cols).To(HaveKey("Topic"))
		g.Expect(cols).To(HaveKey("GroupType"))
		g.Expect(table.Rows).To(HaveLen(1))
		row := table.Rows[0].Cells
		g.Expect(row[cols["Ready"]]).To(Equal("True"))
		g.Expect(row[cols["Replicas"]]).To(BeNumerically("==", 2))
		g.Expect(row[cols["GroupType"]]).To(Equal("Consumer")) // the default
		g.Expect(row[cols["Topic"]]).To(Equal("orders"))
		g.Expect(row[cols["Group"]]).To(Equal(ns + ".printed"))
		// Measured on the suite's Kafka: nothing produced, nothing dead-lettered.
		g.Expect(row[cols["Lag"]]).To(BeNumerically("==", 0))
		g.Expect(row[cols["DLQ"]]).To(BeNumerically("==", 0))
	}).WithTimeout(timeout).WithPolling(poll).Should(Succeed())
}
