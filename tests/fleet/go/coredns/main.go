// A CoreDNS binary with only the plugins the test fleet's Corefiles use, built from the upstream Go
// module at the version each cluster's CoreDNS image names (tests/fleet/build.sh coredns VERSION).
// Same mechanism as CoreDNS's own plugin.cfg + directives generator, minus the plugins we never load.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/erratic"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/template"
)

// The order CoreDNS's plugin.cfg gives these directives: metrics wrap everything after them.
var directives = []string{"bind", "prometheus", "errors", "erratic", "template"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
