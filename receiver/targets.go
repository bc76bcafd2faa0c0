package receiver

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/alertrca/alertrca/store"
)

var targetNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)

// requireAPIToken guards the writing endpoints: without API_TOKEN configured
// they are off (403); with it, they need Authorization: Bearer <API_TOKEN>.
func (s *Server) requireAPIToken(c *gin.Context) {
	if s.cfg.APIToken == "" {
		fail(c, http.StatusForbidden, "writing endpoints are disabled: set API_TOKEN and send Authorization: Bearer <API_TOKEN>")
		return
	}
	s.checkAPIToken(c)
}

// checkAPIToken answers 401 unless the request carries Bearer <API_TOKEN>
// (compared in constant time).
func (s *Server) checkAPIToken(c *gin.Context) {
	scheme, tok, _ := strings.Cut(c.GetHeader("Authorization"), " ")
	if !strings.EqualFold(scheme, "bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), []byte(s.cfg.APIToken)) != 1 {
		c.Header("WWW-Authenticate", `Bearer realm="alertrca"`)
		fail(c, http.StatusUnauthorized, "missing or wrong credentials: send Authorization: Bearer <API_TOKEN>")
	}
}

// publicTarget hides credentials in the endpoint.
func publicTarget(t store.Target) store.Target {
	if u, err := url.Parse(t.Endpoint); err == nil && u.User != nil {
		u.User = nil
		t.Endpoint = u.String()
	}
	return t
}

func (s *Server) listTargets(c *gin.Context) {
	ts, err := s.reads.ListTargets(c.Request.Context())
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	for i := range ts {
		ts[i] = publicTarget(ts[i])
	}
	c.JSON(http.StatusOK, ts)
}

type targetBody struct {
	Endpoint string `json:"endpoint"`
	Job      string `json:"job"`
	Enabled  *bool  `json:"enabled"` // default true
}

func (s *Server) putTarget(c *gin.Context) {
	name := c.Param("name")
	if !targetNameRE.MatchString(name) {
		fail(c, http.StatusBadRequest, "target name must be 1 to 64 letters, digits, '.', '_' or '-'")
		return
	}
	var b targetBody
	if err := c.ShouldBindJSON(&b); err != nil {
		fail(c, http.StatusBadRequest, "body must be JSON {\"endpoint\": \"http://prometheus:9090\", \"job\": \"\", \"enabled\": true}: "+err.Error())
		return
	}
	u, err := url.Parse(b.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fail(c, http.StatusBadRequest, "endpoint must be an http(s) URL of a Prometheus server, got "+strconv.Quote(publicTarget(store.Target{Endpoint: b.Endpoint}).Endpoint))
		return
	}
	t := store.Target{Name: name, Endpoint: strings.TrimRight(b.Endpoint, "/"), Job: b.Job, Enabled: b.Enabled == nil || *b.Enabled}
	if err := s.reads.PutTarget(c.Request.Context(), t); err != nil {
		s.storeFailed(c, err)
		return
	}
	c.JSON(http.StatusOK, publicTarget(t))
}

func (s *Server) deleteTarget(c *gin.Context) {
	err := s.reads.DeleteTarget(c.Request.Context(), c.Param("name"))
	if errors.Is(err, store.ErrNotFound) {
		fail(c, http.StatusNotFound, "no target named "+strconv.Quote(c.Param("name")))
		return
	}
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
