package controllers

import (
	"context"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	sluicev1 "github.com/sluice-dev/sluice/api/v1alpha1"
	"github.com/sluice-dev/sluice/internal/render"
	"github.com/sluice-dev/sluice/internal/workerconfig"
)

func requestFor(sp *sluicev1.StreamPipeline) ctrl.Request {
	return ctrl.Request{NamespacedName: client.ObjectKeyFromObject(sp)}
}

// workerConfigOf parses the worker config the operator rendered for sp, as
// the worker itself would.
func workerConfigOf(g Gomega, sp *sluicev1.StreamPipeline) *workerconfig.Config {
	cm := &corev1.ConfigMap{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: sp.Namespace, Name: render.ConfigMapName(sp)}, cm)).To(Succeed())
	cfg, err := workerconfig.Parse([]byte(cm.Data[workerconfig.FileName]))
	g.Expect(err).NotTo(HaveOccurred())
	return cfg
}
