// Command consul is Consul built from a pinned module version (see scripts/tools.sh); the web UI is embedded.
package main

import (
	"fmt"
	"io"
	"log"
	"os"

	mcli "github.com/mitchellh/cli"

	"github.com/hashicorp/consul/command"
	consulcli "github.com/hashicorp/consul/command/cli"
	"github.com/hashicorp/consul/command/version"
	_ "github.com/hashicorp/consul/service_os" // registers the OS service hooks consul's own main links in
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	// The agent logs through its own logger; stray std-log output would only be noise.
	log.SetOutput(io.Discard)

	ui := &consulcli.BasicUI{BasicUi: mcli.BasicUi{Writer: os.Stdout, ErrorWriter: os.Stderr}}
	commands := command.RegisteredCommands(ui)
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}

	c := &mcli.CLI{
		Args:         args,
		Commands:     commands,
		Autocomplete: true,
		Name:         "consul",
		HelpFunc:     mcli.FilteredHelpFunc(names, mcli.BasicHelpFunc("consul")),
		HelpWriter:   os.Stdout,
		ErrorWriter:  os.Stderr,
	}
	if c.IsVersion() {
		return version.New(ui).Run(nil)
	}

	code, err := c.Run()
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error executing CLI: %v\n", err)
		return 1
	}
	return code
}
