package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// object is one Kubernetes object read from a manifest or the rendered chart.
type object struct {
	// Source names the file and document, for messages.
	Source string
	metav1.TypeMeta
	// Meta is the object's metadata.
	Meta metav1.ObjectMeta
	// Typed is the object decoded strictly into its Go type (*appsv1.Deployment,
	// *traefikMiddleware, ...): an unknown or misspelt field fails the decode.
	Typed any
}

func (o *object) String() string {
	return fmt.Sprintf("%s %s/%s (%s)", o.Kind, o.Meta.Namespace, o.Meta.Name, o.Source)
}

// knownKinds are the apiVersion/kind pairs deploy/ may use, each with the Go
// type that a document of it must decode into without unknown fields.
var knownKinds = map[string]func() any{
	"v1/Namespace":                       func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                       func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                          func() any { return new(corev1.Secret) },
	"v1/Service":                         func() any { return new(corev1.Service) },
	"v1/ServiceAccount":                  func() any { return new(corev1.ServiceAccount) },
	"apps/v1/Deployment":                 func() any { return new(appsv1.Deployment) },
	"apps/v1/StatefulSet":                func() any { return new(appsv1.StatefulSet) },
	"policy/v1/PodDisruptionBudget":      func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1/Ingress":       func() any { return new(networkingv1.Ingress) },
	"networking.k8s.io/v1/NetworkPolicy": func() any { return new(networkingv1.NetworkPolicy) },
	"traefik.io/v1alpha1/Middleware":     func() any { return new(traefikMiddleware) },
	"traefik.io/v1alpha1/IngressRoute":   func() any { return new(traefikIngressRoute) },
}

// traefikMiddleware is the part of Traefik's Middleware CRD that deploy/
// uses (forwardAuth).
type traefikMiddleware struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ForwardAuth *struct {
			Address             string   `json:"address"`
			TrustForwardHeader  bool     `json:"trustForwardHeader"`
			AuthResponseHeaders []string `json:"authResponseHeaders"`
		} `json:"forwardAuth"`
	} `json:"spec"`
}

// traefikIngressRoute is the part of Traefik's IngressRoute CRD that
// deploy/ uses.
type traefikIngressRoute struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		EntryPoints []string `json:"entryPoints"`
		Routes      []struct {
			Kind        string `json:"kind"`
			Match       string `json:"match"`
			Middlewares []struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"middlewares"`
			Services []struct {
				Name      string             `json:"name"`
				Namespace string             `json:"namespace"`
				Port      intstr.IntOrString `json:"port"`
			} `json:"services"`
		} `json:"routes"`
		TLS *struct {
			SecretName string `json:"secretName"`
		} `json:"tls"`
	} `json:"spec"`
}

// decodeObjects splits a multi-document YAML stream and decodes each
// non-empty document. defaultNamespace fills a missing namespace (Helm's
// release namespace); "" leaves it empty, which checkSet reports.
func decodeObjects(source string, data []byte, defaultNamespace string) ([]*object, error) {
	var out []*object
	r := yamlutil.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for i := 0; ; i++ {
		doc, err := r.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		src := fmt.Sprintf("%s#%d", source, i)
		var head struct {
			metav1.TypeMeta `json:",inline"`
			Metadata        metav1.ObjectMeta `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		newTyped, ok := knownKinds[head.APIVersion+"/"+head.Kind]
		if !ok {
			return nil, fmt.Errorf("%s: apiVersion %q kind %q is not one of the known kinds (%s)", src, head.APIVersion, head.Kind, strings.Join(sortedKeys(knownKinds), ", "))
		}
		typed := newTyped()
		if err := yaml.UnmarshalStrict(doc, typed); err != nil {
			return nil, fmt.Errorf("%s: %s %q: %w", src, head.Kind, head.Metadata.Name, err)
		}
		o := &object{Source: src, TypeMeta: head.TypeMeta, Meta: head.Metadata, Typed: typed}
		if o.Meta.Namespace == "" && o.Kind != "Namespace" {
			o.Meta.Namespace = defaultNamespace
		}
		out = append(out, o)
	}
}

// stripComments drops comment lines, so that a document of comments only
// counts as empty.
func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' && !bytes.Equal(t, []byte("---")) {
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func metaNamed(name, namespace string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: namespace}
}

func typeMeta(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}
