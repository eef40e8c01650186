// Command vault is Vault built from a pinned module version (see scripts/tools.sh): the CLI and server in one binary.
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() {
	os.Exit(command.Run(os.Args[1:]))
}
