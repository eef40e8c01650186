package edge

import (
	"time"

	"github.com/go-kit/kit/metrics"
	"github.com/pizzajoint/mesh/platform/clientlimit"
)

// Config is the operators' setting of the limits, per client IP address unless said otherwise. Its field
// names and tags are the environment's (GATEWAY_LIMITS_…) and the flags' names: renaming one breaks deployments.
type Config struct {
	OrderRate        float64       `conf:"default:50,help:orders per second per client (0: no limit)"`
	OrderBurst       int           `conf:"default:100"`
	LoginRate        float64       `conf:"default:0.2,help:staff sign-in attempts per second per client (0: no limit)"`
	LoginBurst       int           `conf:"default:10"`
	Clients          int           `conf:"default:10000,help:clients each rate limit tracks; idle ones are forgotten first"`
	StreamsPerClient int           `conf:"default:1500,help:open event streams per client (0: no cap)"`
	Streams          int           `conf:"default:10000,help:open event streams in all (0: no cap)"`
	StreamLifetime   time.Duration `conf:"default:30m,help:streams end after this and clients resume (0: never)"`
}

// Options are the per-client rate limits and stream caps of c, counting refusals in refused.
func (c Config) Options(refused metrics.Counter) []Option {
	return []Option{
		WithRefusalCounter(refused),
		WithOrderRateLimit(clientlimit.NewRateLimiter(c.OrderRate, c.OrderBurst, c.Clients)),
		WithLoginRateLimit(clientlimit.NewRateLimiter(c.LoginRate, c.LoginBurst, c.Clients)),
		WithStreamLimits(clientlimit.NewStreamLimiter(c.StreamsPerClient, c.Streams), c.StreamLifetime),
	}
}
