// Package kubernetes checks the example manifests: each decodes, strictly
// (an unknown or misspelt field fails), into the real k8s.io/api type of
// its kind, and the probes, ports and grace period agree with the corral
// flags the Deployment runs with. It is a module of its own, so that the
// main module does not depend on k8s.io.
package kubernetes

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

// kinds are the types the manifests may hold, by apiVersion and kind.
var kinds = map[string]func() any{
	"apps/v1/Deployment":                     func() any { return &appsv1.Deployment{} },
	"v1/Service":                             func() any { return &corev1.Service{} },
	"v1/ConfigMap":                           func() any { return &corev1.ConfigMap{} },
	"policy/v1/PodDisruptionBudget":          func() any { return &policyv1.PodDisruptionBudget{} },
	"autoscaling/v2/HorizontalPodAutoscaler": func() any { return &autoscalingv2.HorizontalPodAutoscaler{} },
}

// decodeAll decodes every document of every manifest, strictly.
func decodeAll(t *testing.T) map[string]any {
	t.Helper()
	files, _ := filepath.Glob("*.yaml")
	if len(files) == 0 {
		t.Fatal("no manifests")
	}
	objs := map[string]any{} // "Kind/name"
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			newObj, ok := kinds[tm.APIVersion+"/"+tm.Kind]
			if !ok {
				t.Fatalf("%s document %d: unexpected %s %s", f, i+1, tm.APIVersion, tm.Kind)
			}
			obj := newObj()
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Fatalf("%s document %d (%s): %v", f, i+1, tm.Kind, err)
			}
			name := obj.(metav1.Object).GetName()
			objs[tm.Kind+"/"+name] = obj
		}
	}
	return objs
}

func TestStrictDecodingCatchesAMisspeltField(t *testing.T) {
	bad := []byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  selektor: {a: b}\n")
	if err := yaml.UnmarshalStrict(bad, &corev1.Service{}); err == nil {
		t.Fatal("a misspelt field decoded without an error")
	}
}

// corralFlags reads --name=value (or --name value) flags from args.
func corralFlags(args []string) map[string]string {
	flags := map[string]string{}
	for i := 0; i < len(args); i++ {
		name, ok := strings.CutPrefix(args[i], "--")
		if !ok {
			continue
		}
		if k, v, ok := strings.Cut(name, "="); ok {
			flags[k] = v
		} else if i+1 < len(args) {
			flags[name] = args[i+1]
			i++
		}
	}
	return flags
}

// port is the port of a bind address: "0.0.0.0:9100" -> 9100.
func port(t *testing.T, bind string) int32 {
	t.Helper()
	i := strings.LastIndex(bind, ":")
	n, err := strconv.Atoi(bind[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("bind %q has no port", bind)
	}
	return int32(n)
}

// resolve is the container port a probe's or a Service's port names.
func resolve(t *testing.T, c corev1.Container, p intstr.IntOrString) int32 {
	t.Helper()
	if p.Type == intstr.Int {
		return p.IntVal
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return cp.ContainerPort
		}
	}
	t.Fatalf("container %s has no port named %q", c.Name, p.StrVal)
	return 0
}

func seconds(t *testing.T, flags map[string]string, name string, def float64) float64 {
	t.Helper()
	v, ok := flags[name]
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		t.Fatalf("--%s=%q: %v", name, v, err)
	}
	return f
}

// corralDeployment is the Deployment corral, its container corral and
// that container's corral flags.
func corralDeployment(t *testing.T, objs map[string]any) (*appsv1.Deployment, corev1.Container, map[string]string) {
	t.Helper()
	d, ok := objs["Deployment/corral"].(*appsv1.Deployment)
	if !ok {
		t.Fatal("no Deployment corral")
	}
	var c corev1.Container
	for _, x := range d.Spec.Template.Spec.Containers {
		if x.Name == "corral" {
			c = x
		}
	}
	if c.Name == "" {
		t.Fatal("no container corral")
	}
	return d, c, corralFlags(c.Args)
}

// TestManifestsAgreeWithCorralsFlags: the probes, the grace period and the
// resources fit the corral flags in the Deployment.
func TestManifestsAgreeWithCorralsFlags(t *testing.T) {
	objs := decodeAll(t)
	d, c, flags := corralDeployment(t, objs)
	pod := d.Spec.Template.Spec
	metricsBind, bind := flags["metrics-bind"], flags["bind"]
	if metricsBind == "" || bind == "" {
		t.Fatalf("args %q: want --bind and --metrics-bind", c.Args)
	}
	for _, p := range []struct {
		what  string
		probe *corev1.Probe
		path  string
	}{{"readiness", c.ReadinessProbe, "/readyz"}, {"liveness", c.LivenessProbe, "/livez"}, {"startup", c.StartupProbe, "/readyz"}} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("no %s probe over HTTP", p.what)
			continue
		}
		if p.probe.HTTPGet.Path != p.path {
			t.Errorf("%s probe on %s, want %s", p.what, p.probe.HTTPGet.Path, p.path)
		}
		if got, want := resolve(t, c, p.probe.HTTPGet.Port), port(t, metricsBind); got != want {
			t.Errorf("%s probe on port %d, but --metrics-bind=%s", p.what, got, metricsBind)
		}
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		t.Error("a preStop hook: --shutdown-delay does its work")
	}
	delay, graceful := seconds(t, flags, "shutdown-delay", 0), seconds(t, flags, "graceful-timeout", 30)
	if delay <= 0 {
		t.Error("no --shutdown-delay: the endpoint would stop taking connections before the Service drops it")
	}
	need := int64(math.Ceil(delay + graceful + 5))
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds < need {
		t.Errorf("terminationGracePeriodSeconds %v, want at least shutdown-delay + graceful-timeout + 5 = %d", pod.TerminationGracePeriodSeconds, need)
	}
	if c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("no CPU or memory limit: -w auto and --max-memory auto read them")
	}

	t.Log(fmt.Sprintf("%d objects; grace %ds for a %gs delay and a %gs graceful timeout", len(objs), *pod.TerminationGracePeriodSeconds, delay, graceful))
}

// TestManifestServiceAndBudget: the Service reaches --bind, and it and the
// PodDisruptionBudget select the Deployment's pods.
func TestManifestServiceAndBudget(t *testing.T) {
	objs := decodeAll(t)
	d, c, flags := corralDeployment(t, objs)
	bind := flags["bind"]
	svc, ok := objs["Service/corral"].(*corev1.Service)
	if !ok {
		t.Fatal("no Service corral")
	}
	for _, sp := range svc.Spec.Ports {
		if got, want := resolve(t, c, sp.TargetPort), port(t, bind); got != want {
			t.Errorf("the Service's port %s goes to %d, but --bind=%s", sp.Name, got, bind)
		}
	}
	labels := d.Spec.Template.Labels
	matches := func(what string, sel map[string]string) {
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s selects %s=%s, which the pods do not have", what, k, v)
			}
		}
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", what)
		}
	}
	matches("the Service", svc.Spec.Selector)
	pdb, ok := objs["PodDisruptionBudget/corral"].(*policyv1.PodDisruptionBudget)
	if !ok {
		t.Fatal("no PodDisruptionBudget corral")
	}
	matches("the PodDisruptionBudget", pdb.Spec.Selector.MatchLabels)

}

// TestManifestAutoscaler: the HPA scales the Deployment on a metric the
// Prometheus adapter serves from corral's series.
func TestManifestAutoscaler(t *testing.T) {
	objs := decodeAll(t)
	d, _, _ := corralDeployment(t, objs)
	hpa, ok := objs["HorizontalPodAutoscaler/corral"].(*autoscalingv2.HorizontalPodAutoscaler)
	if !ok {
		t.Fatal("no HorizontalPodAutoscaler corral")
	}
	if ref := hpa.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != d.Name {
		t.Errorf("the HPA scales %s/%s, want Deployment/%s", ref.Kind, ref.Name, d.Name)
	}
	cm, ok := objs["ConfigMap/adapter-config"].(*corev1.ConfigMap)
	if !ok {
		t.Fatal("no ConfigMap adapter-config (the Prometheus adapter's rules)")
	}
	var rules struct {
		Rules []struct {
			SeriesQuery string `json:"seriesQuery"`
			Name        struct {
				Matches string `json:"matches"`
				As      string `json:"as"`
			} `json:"name"`
			MetricsQuery string `json:"metricsQuery"`
		} `json:"rules"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &rules); err != nil {
		t.Fatalf("the adapter's config.yaml: %v", err)
	}
	served := map[string]string{}
	for _, r := range rules.Rules {
		served[r.Name.As] = r.MetricsQuery
	}
	for _, m := range hpa.Spec.Metrics {
		if m.Type != autoscalingv2.PodsMetricSourceType || m.Pods == nil {
			t.Errorf("HPA metric %s: want a pods metric from the adapter", m.Type)
			continue
		}
		q, ok := served[m.Pods.Metric.Name]
		if !ok {
			t.Errorf("HPA metric %s: no adapter rule serves it (rules: %v)", m.Pods.Metric.Name, served)
		}
		// The series are corral's (docs/metrics.md on the main module).
		for _, series := range []string{"corral_workers{", "corral_workers_target{"} {
			if m.Pods.Metric.Name == "corral_busy_share" && !strings.Contains(q, series) {
				t.Errorf("corral_busy_share's query %q does not read %s", q, series)
			}
		}
	}
}
