package provision

import (
	"fmt"
	"strconv"
	"strings"
)

// A plan lists the instances and agents one `meshctl setup` run provisions after the bootstrap, for an
// environment with no shell to loop over `meshctl deliver` (Compose's images hold one binary each). Items are
// separated by spaces or semicolons, fields by commas, each field key=value:
//
//	service=order,id=order-1,dir=/pods/order-1,owner=10001:10001,consul=true,nats=order
//	node=order-1,file=/agents/order-1/token.hcl,owner=10100:10100

// ParseInstances reads a plan of instances.
func ParseInstances(plan string) ([]Instance, error) {
	var out []Instance
	err := eachItem(plan, func(f map[string]string) error {
		inst := Instance{Service: f["service"], ID: f["id"], Dir: f["dir"], Owner: f["owner"], NATS: f["nats"]}
		if v, ok := f["consul"]; ok {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return fmt.Errorf("consul=%q: %w", v, err)
			}
			inst.Consul = b
		}
		if err := inst.valid(); err != nil {
			return err
		}
		// The role names a permissions file (nats/permissions/<role>.conf).
		if inst.NATS != "" && strings.Trim(inst.NATS, "abcdefghijklmnopqrstuvwxyz-") != "" {
			return fmt.Errorf("nats=%q: want a role name such as order", inst.NATS)
		}
		if inst.Owner != "" {
			if _, _, err := parseOwner(inst.Owner); err != nil {
				return err
			}
		}
		out = append(out, inst)
		return nil
	}, "service", "id", "dir", "owner", "consul", "nats")
	return out, err
}

// ParseAgents reads a plan of Consul client agents.
func ParseAgents(plan string) ([]Agent, error) {
	var out []Agent
	err := eachItem(plan, func(f map[string]string) error {
		a := Agent{Node: f["node"], File: f["file"], Owner: f["owner"]}
		if a.Node == "" || a.File == "" {
			return fmt.Errorf("an agent needs node= and file=")
		}
		if a.Owner != "" {
			if _, _, err := parseOwner(a.Owner); err != nil {
				return err
			}
		}
		out = append(out, a)
		return nil
	}, "node", "file", "owner")
	return out, err
}

func eachItem(plan string, fn func(map[string]string) error, keys ...string) error {
	items := strings.FieldsFunc(plan, func(r rune) bool { return r == ';' || r == ' ' || r == '\n' || r == '\t' })
	for _, item := range items {
		fields := map[string]string{}
		for _, kv := range strings.Split(item, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || !contains(keys, k) {
				return fmt.Errorf("plan item %q: field %q is not one of %s", item, kv, strings.Join(keys, ", "))
			}
			if _, dup := fields[k]; dup {
				return fmt.Errorf("plan item %q: %s given twice", item, k)
			}
			fields[k] = v
		}
		if err := fn(fields); err != nil {
			return fmt.Errorf("plan item %q: %w", item, err)
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
