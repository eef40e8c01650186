package provision

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"

	consul "github.com/hashicorp/consul/api"
)

// Clusters shows and mends the raft clusters of the control plane: Consul's servers and Vault's nodes.
type Clusters struct {
	s   *Session
	acl *ConsulACL
}

// NewClusters returns the cluster unit on s; acl leases the Consul token it reads the raft peers with.
func NewClusters(s *Session, acl *ConsulACL) *Clusters {
	return &Clusters{s: s, acl: acl}
}

// RaftPeer is one server of a raft cluster as its leader sees it.
type RaftPeer struct {
	Node    string `json:"node"`
	Address string `json:"address"`
	Leader  bool   `json:"leader"`
	Voter   bool   `json:"voter"`
	// Healthy is autopilot's verdict: in contact with the leader and caught up with its log.
	Healthy bool `json:"healthy"`
}

// ClusterStatus is what `meshctl cluster status` prints.
type ClusterStatus struct {
	Consul []RaftPeer `json:"consul"`
	Vault  []RaftPeer `json:"vault"`
	// Database is the replica's replication, where meshctl has the replica's socket (Compose).
	Database *ReplicaStatus `json:"database,omitempty"`
}

// Status reads the raft peers of both clusters: Consul's with a short-lived operator token leased from Vault
// (operator read), Vault's with the session's token (the operator token's raft read paths).
func (cl *Clusters) Status(ctx context.Context) (ClusterStatus, error) {
	var st ClusterStatus
	err := cl.acl.withConsulToken(ctx, "operator", func(c *consul.Client) error {
		var err error
		st.Consul, err = consulPeers(ctx, c)
		return err
	})
	if err != nil {
		return st, fmt.Errorf("consul raft peers: %w", err)
	}
	if st.Vault, err = cl.vaultPeers(ctx); err != nil {
		return st, fmt.Errorf("vault raft peers: %w", err)
	}
	if cl.s.cfg.DB.Replica.Socket != "" {
		st.Database = replicaStatus(ctx, cl.s.cfg.DB.Socket, cl.s.cfg.DB.Replica)
	}
	return st, nil
}

func consulPeers(ctx context.Context, c *consul.Client) ([]RaftPeer, error) {
	q := (&consul.QueryOptions{}).WithContext(ctx)
	raft, err := c.Operator().RaftGetConfiguration(q)
	if err != nil {
		return nil, err
	}
	// Autopilot answers 429 with the same report when the cluster is unhealthy.
	health, err := c.Operator().AutopilotServerHealth(q)
	if err != nil {
		return nil, err
	}
	healthy := map[string]bool{}
	for _, s := range health.Servers {
		healthy[s.Name] = s.Healthy
	}
	out := make([]RaftPeer, 0, len(raft.Servers))
	for _, s := range raft.Servers {
		out = append(out, RaftPeer{Node: s.Node, Address: s.Address, Leader: s.Leader, Voter: s.Voter, Healthy: healthy[s.Node]})
	}
	sortPeers(out)
	return out, nil
}

func (cl *Clusters) vaultPeers(ctx context.Context) ([]RaftPeer, error) {
	sec, err := cl.s.read(ctx, "sys/storage/raft/configuration")
	if err != nil {
		return nil, err
	}
	if sec == nil {
		return nil, fmt.Errorf("vault has no raft configuration (not on integrated storage?)")
	}
	var cfg struct {
		Config struct {
			Servers []struct {
				NodeID  string `json:"node_id"`
				Address string `json:"address"`
				Leader  bool   `json:"leader"`
				Voter   bool   `json:"voter"`
			} `json:"servers"`
		} `json:"config"`
	}
	if err := remarshal(sec.Data, &cfg); err != nil {
		return nil, err
	}
	healthy := map[string]bool{}
	if state, err := cl.s.read(ctx, "sys/storage/raft/autopilot/state"); err == nil && state != nil {
		var ap struct {
			Servers map[string]struct {
				Healthy bool `json:"healthy"`
			} `json:"servers"`
		}
		if remarshal(state.Data, &ap) == nil {
			for id, s := range ap.Servers {
				healthy[id] = s.Healthy
			}
		}
	}
	out := make([]RaftPeer, 0, len(cfg.Config.Servers))
	for _, s := range cfg.Config.Servers {
		out = append(out, RaftPeer{Node: s.NodeID, Address: s.Address, Leader: s.Leader, Voter: s.Voter, Healthy: healthy[s.NodeID]})
	}
	sortPeers(out)
	return out, nil
}

// RemovePeer takes a dead server out of a cluster's raft configuration ("consul" or "vault"), so that its quorum
// counts the servers that are left and a replacement joins as a new peer. Consul's is done with a short-lived
// operator token (operator write); Vault's needs this run's provisioning token (the operator token cannot
// change the cluster's membership).
func (cl *Clusters) RemovePeer(ctx context.Context, cluster, node string) error {
	switch cluster {
	case "consul":
		return cl.acl.withConsulToken(ctx, "operator", func(c *consul.Client) error {
			peers, err := consulPeers(ctx, c)
			if err != nil {
				return err
			}
			for _, p := range peers {
				if p.Node == node {
					if p.Leader {
						return fmt.Errorf("consul server %s is the leader: remove a dead server only", node)
					}
					return c.Operator().RaftRemovePeerByAddress(p.Address, (&consul.WriteOptions{}).WithContext(ctx))
				}
			}
			return fmt.Errorf("consul has no raft peer %q", node)
		})
	case "vault":
		peers, err := cl.vaultPeers(ctx)
		if err != nil {
			return err
		}
		for _, p := range peers {
			if p.Node == node && p.Leader {
				return fmt.Errorf("vault node %s is the leader: remove a dead node only", node)
			}
		}
		return cl.s.write(ctx, "sys/storage/raft/remove-peer", map[string]any{"server_id": node})
	default:
		return fmt.Errorf("no cluster %q (consul or vault)", cluster)
	}
}

// WriteStatus prints st as a table: cluster, node, address, role, health.
func WriteStatus(w io.Writer, st ClusterStatus) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CLUSTER\tNODE\tADDRESS\tROLE\tHEALTHY")
	for _, c := range []struct {
		name  string
		peers []RaftPeer
	}{{"consul", st.Consul}, {"vault", st.Vault}} {
		for _, p := range c.peers {
			role := "follower"
			switch {
			case p.Leader && c.name == "vault":
				role = "leader (active)"
			case p.Leader:
				role = "leader"
			case !p.Voter:
				role = "non-voter"
			case c.name == "vault":
				role = "follower (standby)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\n", c.name, p.Node, p.Address, role, p.Healthy)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if d := st.Database; d != nil {
		_, err := fmt.Fprintln(w, "\n"+d.String())
		return err
	}
	return nil
}

func sortPeers(p []RaftPeer) { sort.Slice(p, func(i, j int) bool { return p[i].Node < p[j].Node }) }

// remarshal decodes a Vault response's untyped data into v.
func remarshal(data map[string]any, v any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
