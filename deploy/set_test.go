package deploy

import (
	"fmt"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// set is what is applied together: one scenario directory with what it
// depends on (../redis/), or one rendering of the chart. Every reference
// must resolve inside it.
type set struct {
	Name    string
	Objects []*object
	// Release marks a rendered chart: the namespace is the release's, so no
	// Namespace objects are expected.
	Release bool
}

// find returns the object of kind in namespace ns named name, or nil.
func (s *set) find(kind, ns, name string) *object {
	for _, o := range s.Objects {
		if o.Kind == kind && o.Meta.Name == name && (kind == "Namespace" || o.Meta.Namespace == ns) {
			return o
		}
	}
	return nil
}

// all returns the objects of kind.
func (s *set) all(kind string) []*object {
	var out []*object
	for _, o := range s.Objects {
		if o.Kind == kind {
			out = append(out, o)
		}
	}
	return out
}

// workload is a Deployment or StatefulSet, seen through its pod template.
type workload struct {
	Obj      *object
	Replicas int32
	Selector *metav1.LabelSelector
	Template *corev1.PodTemplateSpec
	// Claims are the StatefulSet's volumeClaimTemplates, which pods mount
	// like volumes.
	Claims map[string]bool
}

func (w workload) Namespace() string { return w.Obj.Meta.Namespace }

// container returns the pod's container called name, or nil.
func (w workload) container(name string) *corev1.Container {
	for i := range w.Template.Spec.Containers {
		if w.Template.Spec.Containers[i].Name == name {
			return &w.Template.Spec.Containers[i]
		}
	}
	return nil
}

// hasPortName reports whether one of the pod's containers declares a port
// called name.
func (w workload) hasPortName(name string) bool {
	for _, c := range w.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

// hasPortNumber reports whether one of the pod's containers declares port n.
func (w workload) hasPortNumber(n int32) bool {
	for _, c := range w.Template.Spec.Containers {
		for _, p := range c.Ports {
			if p.ContainerPort == n {
				return true
			}
		}
	}
	return false
}

func (s *set) workloads() []workload {
	var out []workload
	for _, o := range s.Objects {
		switch v := o.Typed.(type) {
		case *appsv1.Deployment:
			out = append(out, workload{Obj: o, Replicas: replicas(v.Spec.Replicas), Selector: v.Spec.Selector, Template: &v.Spec.Template})
		case *appsv1.StatefulSet:
			claims := map[string]bool{}
			for _, c := range v.Spec.VolumeClaimTemplates {
				claims[c.Name] = true
			}
			out = append(out, workload{Obj: o, Replicas: replicas(v.Spec.Replicas), Selector: v.Spec.Selector, Template: &v.Spec.Template, Claims: claims})
		}
	}
	return out
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

// selected returns the workloads in ns whose pods sel matches.
func (s *set) selected(ns string, sel labels.Selector) []workload {
	var out []workload
	for _, w := range s.workloads() {
		if w.Namespace() == ns && sel.Matches(labels.Set(w.Template.Labels)) {
			out = append(out, w)
		}
	}
	return out
}

// selector converts a LabelSelector; an empty one selects everything, as
// in Kubernetes.
func selector(sel *metav1.LabelSelector) (labels.Selector, error) {
	if sel == nil {
		return labels.Nothing(), nil
	}
	return metav1.LabelSelectorAsSelector(sel)
}

// namespaceLabels are the labels of namespace ns: the automatic
// kubernetes.io/metadata.name and those of its Namespace object in the set.
func (s *set) namespaceLabels(ns string) labels.Set {
	l := labels.Set{"kubernetes.io/metadata.name": ns}
	if o := s.find("Namespace", "", ns); o != nil {
		for k, v := range o.Meta.Labels {
			l[k] = v
		}
	}
	return l
}

// problems collects what a check found, one line each.
type problems []string

func (p *problems) add(o fmt.Stringer, format string, args ...any) {
	*p = append(*p, o.String()+": "+fmt.Sprintf(format, args...))
}

func (p problems) sorted() []string {
	out := append([]string(nil), p...)
	sort.Strings(out)
	return out
}
