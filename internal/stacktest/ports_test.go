package stacktest

import (
	"sync"
	"testing"
)

// The bench starts two stacks at once in one process: their ports, sidecar ranges included, never meet.
func TestStacksStartedAtOnceGetDisjointPorts(t *testing.T) {
	const stacks = 2
	got := make([]Ports, stacks)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range stacks {
		wg.Go(func() {
			<-start
			p, err := freePorts()
			if err != nil {
				t.Error(err)
			}
			got[i] = p
		})
	}
	close(start)
	wg.Wait()
	owner := map[int]int{} // port → stack
	for i, p := range got {
		ports := []int{p.MySQL, p.MySQLReplica, p.ConsulHTTPS, p.ConsulServer, p.ConsulSerfLAN, p.ConsulSerfWAN,
			p.Vault, p.Vault + 1, p.Gateway, p.OrderUpstream}
		for r := range MaxOrderReplicas {
			ports = append(ports, p.Order+r)
		}
		for port := p.SidecarMin; port <= p.SidecarMax; port++ {
			ports = append(ports, port)
		}
		if p.SidecarMax-p.SidecarMin != 19 {
			t.Errorf("stack %d: sidecar range %d…%d; want 20 ports", i, p.SidecarMin, p.SidecarMax)
		}
		for _, port := range ports {
			if j, ok := owner[port]; ok {
				t.Errorf("port %d is stack %d's and stack %d's", port, j, i)
			}
			owner[port] = i
		}
	}
}
