package deploy

import (
	"slices"

	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// checkNetworkPolicies checks that each policy selects pods of the set,
// names their ports, and that a same-namespace peer selects some pods (a
// policy that admits nothing is a typo, not a choice).
func checkNetworkPolicies(s *set, p *problems) {
	for _, o := range s.all("NetworkPolicy") {
		np := o.Typed.(*networkingv1.NetworkPolicy)
		sel, err := selector(&np.Spec.PodSelector)
		if err != nil {
			p.add(o, "podSelector: %v", err)
			continue
		}
		pods := s.selected(o.Meta.Namespace, sel)
		if len(pods) == 0 {
			p.add(o, "podSelector %s matches no pod template", sel)
		}
		for _, rule := range np.Spec.Ingress {
			for _, port := range rule.Ports {
				if port.Port == nil || port.Port.Type != intstr.String {
					continue
				}
				for _, w := range pods {
					if !w.hasPortName(port.Port.StrVal) {
						p.add(o, "port %q is not a container port name of %s", port.Port.StrVal, w.Obj)
					}
				}
			}
			for _, peer := range rule.From {
				if peer.PodSelector == nil {
					continue
				}
				// A peer of the policy's own namespace should select some
				// of our pods; one with a namespaceSelector may name pods
				// that other sets bring (Redis's clients, the ingress
				// controller).
				if peer.NamespaceSelector != nil {
					continue
				}
				psel, err := selector(peer.PodSelector)
				if err != nil {
					p.add(o, "from.podSelector: %v", err)
					continue
				}
				found := false
				for _, w := range s.workloads() {
					if w.Namespace() == o.Meta.Namespace && psel.Matches(labels.Set(w.Template.Labels)) {
						found = true
					}
				}
				if !found {
					p.add(o, "from.podSelector %s matches no pod template: the policy admits nothing", psel)
				}
			}
		}
	}
}

// admits reports whether the NetworkPolicies of the target workload let
// pods of from reach its port (a container port name or number as text).
// Without a policy that selects the target, everything is admitted.
func admits(s *set, target workload, from workload, port string) bool {
	selectedBy := 0
	for _, o := range s.all("NetworkPolicy") {
		np := o.Typed.(*networkingv1.NetworkPolicy)
		sel, err := selector(&np.Spec.PodSelector)
		if err != nil || o.Meta.Namespace != target.Namespace() || !sel.Matches(labels.Set(target.Template.Labels)) {
			continue
		}
		if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) && len(np.Spec.PolicyTypes) > 0 {
			continue
		}
		selectedBy++
		for _, rule := range np.Spec.Ingress {
			if !portAllowed(rule.Ports, port) {
				continue
			}
			if len(rule.From) == 0 {
				return true
			}
			for _, peer := range rule.From {
				if peerMatches(s, peer, o.Meta.Namespace, from) {
					return true
				}
			}
		}
	}
	return selectedBy == 0
}

func portAllowed(ports []networkingv1.NetworkPolicyPort, port string) bool {
	if len(ports) == 0 {
		return true
	}
	for _, pp := range ports {
		if pp.Port == nil || pp.Port.String() == port {
			return true
		}
	}
	return false
}

func peerMatches(s *set, peer networkingv1.NetworkPolicyPeer, policyNS string, from workload) bool {
	if peer.IPBlock != nil {
		return false
	}
	if peer.NamespaceSelector != nil {
		nsel, err := selector(peer.NamespaceSelector)
		if err != nil || !nsel.Matches(s.namespaceLabels(from.Namespace())) {
			return false
		}
	} else if from.Namespace() != policyNS {
		return false
	}
	if peer.PodSelector == nil {
		return true
	}
	psel, err := selector(peer.PodSelector)
	return err == nil && psel.Matches(labels.Set(from.Template.Labels))
}
