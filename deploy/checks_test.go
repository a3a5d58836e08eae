package deploy

import (
	"fmt"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// checkSet runs every check on s: references, selectors, ports, security
// and the authgate-specific rules (gateway_test.go). It returns what is
// wrong, one line each.
func checkSet(s *set) problems {
	var p problems
	checkUnique(s, &p)
	checkNamespaces(s, &p)
	for _, w := range s.workloads() {
		checkWorkload(s, w, &p)
	}
	checkServices(s, &p)
	checkPDBs(s, &p)
	checkIngresses(s, &p)
	checkNetworkPolicies(s, &p)
	checkTraefik(s, &p)
	checkGateways(s, &p)
	return p
}

func checkUnique(s *set, p *problems) {
	seen := map[string]*object{}
	for _, o := range s.Objects {
		key := o.Kind + " " + o.Meta.Namespace + "/" + o.Meta.Name
		if first, ok := seen[key]; ok {
			p.add(o, "defined twice (also %s)", first.Source)
		}
		seen[key] = o
		if o.Meta.Name == "" {
			p.add(o, "no metadata.name")
		}
	}
}

func checkNamespaces(s *set, p *problems) {
	for _, o := range s.Objects {
		if o.Kind == "Namespace" {
			if s.Release {
				p.add(o, "a chart must not create Namespaces (helm install --create-namespace does)")
			}
			continue
		}
		switch {
		case o.Meta.Namespace == "":
			p.add(o, "no metadata.namespace (a manifest names its namespace, so that cross-namespace DNS names in it are right)")
		case !s.Release && s.find("Namespace", "", o.Meta.Namespace) == nil:
			p.add(o, "namespace %q is not created in this set", o.Meta.Namespace)
		}
	}
}

// checkWorkload checks a Deployment's or StatefulSet's selector, pod
// template references, security context, resources and probes.
func checkWorkload(s *set, w workload, p *problems) {
	o, ns, spec := w.Obj, w.Namespace(), &w.Template.Spec
	if sel, err := selector(w.Selector); err != nil {
		p.add(o, "spec.selector: %v", err)
	} else if w.Selector == nil || sel.Empty() {
		p.add(o, "spec.selector is empty")
	} else if !sel.Matches(labels.Set(w.Template.Labels)) {
		p.add(o, "spec.selector %s does not match the pod template's labels %v", sel, w.Template.Labels)
	}
	if ss, ok := o.Typed.(*appsv1.StatefulSet); ok && s.find("Service", ns, ss.Spec.ServiceName) == nil {
		p.add(o, "serviceName %q: no such Service", ss.Spec.ServiceName)
	}
	if sa := spec.ServiceAccountName; sa != "" && sa != "default" && s.find("ServiceAccount", ns, sa) == nil {
		p.add(o, "serviceAccountName %q: no such ServiceAccount", sa)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		p.add(o, "automountServiceAccountToken: want false (nothing here talks to the Kubernetes API)")
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		p.add(o, "hostNetwork, hostPID and hostIPC must be off")
	}
	volumes := map[string]bool{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = true
		checkVolume(s, o, ns, v, p)
	}
	for name := range w.Claims {
		volumes[name] = true
	}
	containers := map[string]bool{}
	for _, c := range spec.Containers {
		containers[c.Name] = true
	}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		cp := containerRef{o, c.Name}
		for _, m := range c.VolumeMounts {
			if !volumes[m.Name] {
				p.add(cp, "volumeMount %q: no such volume", m.Name)
			}
		}
		for _, e := range c.Env {
			checkEnv(s, cp, ns, e, containers, p)
		}
		for _, e := range c.EnvFrom {
			if r := e.SecretRef; r != nil && !optional(r.Optional) && s.find("Secret", ns, r.Name) == nil {
				p.add(cp, "envFrom secret %q: no such Secret", r.Name)
			}
			if r := e.ConfigMapRef; r != nil && !optional(r.Optional) && s.find("ConfigMap", ns, r.Name) == nil {
				p.add(cp, "envFrom configMap %q: no such ConfigMap", r.Name)
			}
		}
		checkSecurity(cp, spec.SecurityContext, c.SecurityContext, p)
		checkResources(cp, c.Resources, p)
		checkImage(cp, c.Image, p)
		for _, pr := range []struct {
			kind  string
			probe *corev1.Probe
		}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}} {
			checkProbePort(cp, c, pr.kind, pr.probe, p)
		}
	}
	if w.Replicas > 1 {
		covered := false
		for _, pdb := range s.all("PodDisruptionBudget") {
			b := pdb.Typed.(*policyv1.PodDisruptionBudget)
			if sel, err := selector(b.Spec.Selector); err == nil && pdb.Meta.Namespace == ns && sel.Matches(labels.Set(w.Template.Labels)) {
				covered = true
			}
		}
		if !covered {
			p.add(o, "%d replicas but no PodDisruptionBudget selects its pods", w.Replicas)
		}
	}
}

// containerRef names a container in messages.
type containerRef struct {
	obj  *object
	name string
}

func (c containerRef) String() string { return fmt.Sprintf("%s container %q", c.obj, c.name) }

func optional(b *bool) bool { return b != nil && *b }

func checkVolume(s *set, o *object, ns string, v corev1.Volume, p *problems) {
	if cm := v.ConfigMap; cm != nil && !optional(cm.Optional) {
		obj := s.find("ConfigMap", ns, cm.Name)
		if obj == nil {
			p.add(o, "volume %q: no ConfigMap %q", v.Name, cm.Name)
			return
		}
		for _, it := range cm.Items {
			if !configMapHasKey(obj, it.Key) {
				p.add(o, "volume %q: ConfigMap %q has no key %q", v.Name, cm.Name, it.Key)
			}
		}
	}
	if sv := v.Secret; sv != nil && !optional(sv.Optional) {
		obj := s.find("Secret", ns, sv.SecretName)
		if obj == nil {
			p.add(o, "volume %q: no Secret %q", v.Name, sv.SecretName)
			return
		}
		for _, it := range sv.Items {
			if !secretHasKey(obj, it.Key) {
				p.add(o, "volume %q: Secret %q has no key %q", v.Name, sv.SecretName, it.Key)
			}
		}
	}
}

func configMapHasKey(o *object, key string) bool {
	cm := o.Typed.(*corev1.ConfigMap)
	_, ok := cm.Data[key]
	_, bok := cm.BinaryData[key]
	return ok || bok
}

func secretHasKey(o *object, key string) bool {
	_, ok := secretValue(o, key)
	return ok
}

// secretValue returns a Secret's value under key, from data or stringData.
func secretValue(o *object, key string) (string, bool) {
	sec := o.Typed.(*corev1.Secret)
	if v, ok := sec.StringData[key]; ok {
		return v, true
	}
	v, ok := sec.Data[key]
	return string(v), ok
}

func checkEnv(s *set, c containerRef, ns string, e corev1.EnvVar, containers map[string]bool, p *problems) {
	if e.ValueFrom == nil {
		return
	}
	if r := e.ValueFrom.SecretKeyRef; r != nil && !optional(r.Optional) {
		if obj := s.find("Secret", ns, r.Name); obj == nil {
			p.add(c, "env %s: no Secret %q in namespace %q", e.Name, r.Name, ns)
		} else if !secretHasKey(obj, r.Key) {
			p.add(c, "env %s: Secret %q has no key %q", e.Name, r.Name, r.Key)
		}
	}
	if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !optional(r.Optional) {
		if obj := s.find("ConfigMap", ns, r.Name); obj == nil {
			p.add(c, "env %s: no ConfigMap %q in namespace %q", e.Name, r.Name, ns)
		} else if !configMapHasKey(obj, r.Key) {
			p.add(c, "env %s: ConfigMap %q has no key %q", e.Name, r.Name, r.Key)
		}
	}
	if r := e.ValueFrom.ResourceFieldRef; r != nil {
		if r.ContainerName != "" && !containers[r.ContainerName] {
			p.add(c, "env %s: resourceFieldRef names container %q, which the pod does not have", e.Name, r.ContainerName)
		}
	}
}

// checkSecurity checks the effective security context of a container (its
// own settings over the pod's).
func checkSecurity(c containerRef, pod *corev1.PodSecurityContext, sc *corev1.SecurityContext, p *problems) {
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	runAsNonRoot := firstBool(sc.RunAsNonRoot, pod.RunAsNonRoot)
	if runAsNonRoot == nil || !*runAsNonRoot {
		p.add(c, "runAsNonRoot: want true")
	}
	// A numeric user lets the kubelet verify runAsNonRoot even for images
	// whose USER is a name (distroless's "nonroot").
	if uid := firstInt(sc.RunAsUser, pod.RunAsUser); uid == nil || *uid == 0 {
		p.add(c, "runAsUser: want a non-zero numeric user")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		p.add(c, "readOnlyRootFilesystem: want true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		p.add(c, "allowPrivilegeEscalation: want false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		p.add(c, "privileged: want false")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		p.add(c, "capabilities.drop: want [ALL]")
	} else if len(sc.Capabilities.Add) > 0 {
		p.add(c, "capabilities.add: want none, got %v", sc.Capabilities.Add)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = pod.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		p.add(c, "seccompProfile: want type RuntimeDefault")
	}
}

func firstBool(a, b *bool) *bool {
	if a != nil {
		return a
	}
	return b
}

func firstInt(a, b *int64) *int64 {
	if a != nil {
		return a
	}
	return b
}

func checkResources(c containerRef, r corev1.ResourceRequirements, p *problems) {
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, ok := r.Requests[name]
		if !ok {
			p.add(c, "resources.requests.%s: not set", name)
			continue
		}
		if lim, ok := r.Limits[name]; ok && lim.Cmp(req) < 0 {
			p.add(c, "resources: %s limit %s below its request %s", name, lim.String(), req.String())
		}
	}
	if _, ok := r.Limits[corev1.ResourceMemory]; !ok {
		p.add(c, "resources.limits.memory: not set")
	}
}

func checkImage(c containerRef, image string, p *problems) {
	ref := image[strings.LastIndex(image, "/")+1:]
	_, tag, ok := strings.Cut(ref, ":")
	if !ok || tag == "" || tag == "latest" {
		p.add(c, "image %q: want a pinned tag, not latest or none", image)
	}
}

// checkProbePort checks that a probe's port names a port of its container.
func checkProbePort(c containerRef, ctr corev1.Container, kind string, pr *corev1.Probe, p *problems) {
	if pr == nil {
		return
	}
	var port *intstr.IntOrString
	switch {
	case pr.HTTPGet != nil:
		port = &pr.HTTPGet.Port
	case pr.TCPSocket != nil:
		port = &pr.TCPSocket.Port
	default:
		return
	}
	for _, cp := range ctr.Ports {
		if (port.Type == intstr.String && cp.Name == port.StrVal) || (port.Type == intstr.Int && cp.ContainerPort == port.IntVal) {
			return
		}
	}
	p.add(c, "%s port %s: the container has no such port", kind, port.String())
}

func checkServices(s *set, p *problems) {
	for _, o := range s.all("Service") {
		svc := o.Typed.(*corev1.Service)
		if len(svc.Spec.Selector) == 0 {
			p.add(o, "no selector")
			continue
		}
		pods := s.selected(o.Meta.Namespace, labels.SelectorFromSet(svc.Spec.Selector))
		if len(pods) == 0 {
			p.add(o, "selector %v matches no pod template in namespace %q", svc.Spec.Selector, o.Meta.Namespace)
		}
		names := map[string]bool{}
		for _, sp := range svc.Spec.Ports {
			if names[sp.Name] {
				p.add(o, "port name %q used twice", sp.Name)
			}
			names[sp.Name] = true
			for _, w := range pods {
				tp := sp.TargetPort
				switch {
				case tp.Type == intstr.String && !w.hasPortName(tp.StrVal):
					p.add(o, "port %q: targetPort %q is not a container port name of %s", sp.Name, tp.StrVal, w.Obj)
				case tp.Type == intstr.Int && tp.IntVal != 0 && !w.hasPortNumber(tp.IntVal):
					p.add(o, "port %q: targetPort %d is not a container port of %s", sp.Name, tp.IntVal, w.Obj)
				case tp.Type == intstr.Int && tp.IntVal == 0 && !w.hasPortNumber(sp.Port):
					p.add(o, "port %q: no targetPort, and %d is not a container port of %s", sp.Name, sp.Port, w.Obj)
				}
			}
		}
	}
}

func checkPDBs(s *set, p *problems) {
	for _, o := range s.all("PodDisruptionBudget") {
		b := o.Typed.(*policyv1.PodDisruptionBudget)
		sel, err := selector(b.Spec.Selector)
		if err != nil || b.Spec.Selector == nil || sel.Empty() {
			p.add(o, "no usable selector")
			continue
		}
		pods := s.selected(o.Meta.Namespace, sel)
		if len(pods) == 0 {
			p.add(o, "selector %s matches no pod template", sel)
		}
		for _, w := range pods {
			if m := b.Spec.MinAvailable; m != nil && m.Type == intstr.Int && m.IntVal >= w.Replicas {
				// A budget that no eviction can meet blocks node drains for good.
				p.add(o, "minAvailable %d leaves no disruption for the %d replicas of %s", m.IntVal, w.Replicas, w.Obj)
			}
		}
	}
}

// servicePort finds the Service port that an Ingress or IngressRoute
// backend names (by name or number).
func servicePort(svc *corev1.Service, port intstr.IntOrString) *corev1.ServicePort {
	for i, sp := range svc.Spec.Ports {
		if (port.Type == intstr.String && sp.Name == port.StrVal) || (port.Type == intstr.Int && sp.Port == port.IntVal) {
			return &svc.Spec.Ports[i]
		}
	}
	return nil
}

func checkIngresses(s *set, p *problems) {
	for _, o := range s.all("Ingress") {
		ing := o.Typed.(*networkingv1.Ingress)
		for _, tls := range ing.Spec.TLS {
			if tls.SecretName != "" && s.find("Secret", o.Meta.Namespace, tls.SecretName) == nil {
				p.add(o, "tls secretName %q: no such Secret", tls.SecretName)
			}
		}
		for _, b := range ingressBackends(ing) {
			if b.Service == nil {
				p.add(o, "a backend without a service")
				continue
			}
			checkBackend(s, o, o.Meta.Namespace, b.Service.Name, ingressPort(b.Service.Port), p)
		}
	}
}

func ingressBackends(ing *networkingv1.Ingress) []networkingv1.IngressBackend {
	var out []networkingv1.IngressBackend
	if ing.Spec.DefaultBackend != nil {
		out = append(out, *ing.Spec.DefaultBackend)
	}
	for _, r := range ing.Spec.Rules {
		if r.HTTP == nil {
			continue
		}
		for _, path := range r.HTTP.Paths {
			out = append(out, path.Backend)
		}
	}
	return out
}

func ingressPort(p networkingv1.ServiceBackendPort) intstr.IntOrString {
	if p.Name != "" {
		return intstr.FromString(p.Name)
	}
	return intstr.FromInt32(p.Number)
}

func checkBackend(s *set, o *object, ns, name string, port intstr.IntOrString, p *problems) {
	svcObj := s.find("Service", ns, name)
	if svcObj == nil {
		p.add(o, "backend service %q: no such Service in namespace %q", name, ns)
		return
	}
	if servicePort(svcObj.Typed.(*corev1.Service), port) == nil {
		p.add(o, "backend service %q has no port %s", name, port.String())
	}
}

func checkTraefik(s *set, p *problems) {
	for _, o := range s.all("IngressRoute") {
		ir := o.Typed.(*traefikIngressRoute)
		if ir.Spec.TLS != nil && ir.Spec.TLS.SecretName != "" && s.find("Secret", o.Meta.Namespace, ir.Spec.TLS.SecretName) == nil {
			p.add(o, "tls secretName %q: no such Secret", ir.Spec.TLS.SecretName)
		}
		for _, r := range ir.Spec.Routes {
			if _, err := parseRule(r.Match); err != nil {
				p.add(o, "match %q: %v", r.Match, err)
			}
			for _, m := range r.Middlewares {
				ns := m.Namespace
				if ns == "" {
					ns = o.Meta.Namespace
				}
				if s.find("Middleware", ns, m.Name) == nil {
					p.add(o, "middleware %s/%s: no such Middleware", ns, m.Name)
				}
			}
			for _, svc := range r.Services {
				ns := svc.Namespace
				if ns == "" {
					ns = o.Meta.Namespace
				}
				checkBackend(s, o, ns, svc.Name, svc.Port, p)
			}
		}
	}
}
