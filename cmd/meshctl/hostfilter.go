package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/pizzajoint/mesh/platform/hostfilter"
)

const hostFilterUsage = `usage: meshctl host-filter [-nft PATH] apply TABLE NAME:PORT/PROTO:OWNER:CLIENTS...
       meshctl host-filter [-nft PATH] remove TABLE
       meshctl host-filter [-nft PATH] show TABLE`

// hostFilter runs `meshctl host-filter`: the local stack's owner-matched packet filter (platform/hostfilter says
// how it works), one nftables table per stack, replaced at every start and removed at stop. Needs root.
func hostFilter(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("host-filter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	nftPath := fs.String("nft", "/usr/sbin/nft", "the nft program")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		return errors.New(hostFilterUsage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nft := hostfilter.Nft{Path: *nftPath}
	name := fs.Arg(1)
	switch fs.Arg(0) {
	case "apply":
		t := hostfilter.Table{Name: name}
		for _, spec := range fs.Args()[2:] {
			p, err := hostfilter.ParsePort(spec, hostfilter.LookupUID)
			if err != nil {
				return err
			}
			t.Ports = append(t.Ports, p)
		}
		if len(t.Ports) == 0 {
			return errors.New("host-filter apply: no port to guard\n" + hostFilterUsage)
		}
		return nft.Apply(ctx, t)
	case "remove":
		return nft.Remove(ctx, name)
	case "show":
		out, err := nft.List(ctx, name)
		if err != nil {
			return err
		}
		_, err = fmt.Fprint(stdout, out)
		return err
	}
	return errors.New(hostFilterUsage)
}
