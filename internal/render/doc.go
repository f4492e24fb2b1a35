// Package render turns a StreamPipeline into the objects that run it: the worker
// configuration (ConfigMap), the Deployment, the PodDisruptionBudget and the
// ServiceAccount. Every function here is pure: the same pipeline gives the same
// objects, with no I/O, so the controller only has to apply them and the tests
// can check every field without an API server.
package render
