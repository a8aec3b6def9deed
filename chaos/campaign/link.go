package campaign

import "github.com/exportstream/exportstream/internal/faultproxy"

// link is a connection between processes under the campaign's control: a
// fault proxy named as faults target it. A link to several targets is a
// balancer that skips a dead backend, as nginx does in
// docker-compose.scale.yml.
type link struct {
	name string
	*faultproxy.Proxy
}

func newLink(name string, targets ...string) (*link, error) {
	p, err := faultproxy.New(targets...)
	if err != nil {
		return nil, err
	}
	return &link{name, p}, nil
}

// links are every link, BFFs' first.
func (s *Stack) links() []*link {
	return append(append([]*link(nil), s.bffLinks...), s.redisLinks...)
}
