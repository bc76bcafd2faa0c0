package receiver

import (
	"context"
	"net/http"
	"net/mail"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/alertrca/alertrca/store"
)

// Notifications sends test messages through the configured channels.
type Notifications interface {
	Test(ctx context.Context, channel string) error
}

type emailConfigView struct {
	store.EmailConfig
	SMTPConfigured bool `json:"smtp_configured"`
}

func (s *Server) getEmailConfig(c *gin.Context) {
	ec, _, err := s.reads.GetEmailConfig(c.Request.Context())
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	c.JSON(http.StatusOK, emailConfigView{EmailConfig: ec, SMTPConfigured: s.cfg.SMTPConfigured})
}

type emailConfigBody struct {
	Enabled    *bool     `json:"enabled"`
	Recipients *[]string `json:"recipients"`
}

func (s *Server) putEmailConfig(c *gin.Context) {
	var b emailConfigBody
	if err := c.ShouldBindJSON(&b); err != nil || b.Enabled == nil || b.Recipients == nil {
		fail(c, http.StatusBadRequest, `body must be JSON {"enabled": true, "recipients": ["oncall@example.com"]}`)
		return
	}
	for _, r := range *b.Recipients {
		if _, err := mail.ParseAddress(r); err != nil {
			fail(c, http.StatusBadRequest, "recipient "+strconv.Quote(r)+" is not an email address")
			return
		}
	}
	ec := store.EmailConfig{Enabled: *b.Enabled, Recipients: *b.Recipients}
	if err := s.reads.PutEmailConfig(c.Request.Context(), ec); err != nil {
		s.storeFailed(c, err)
		return
	}
	c.JSON(http.StatusOK, emailConfigView{EmailConfig: ec, SMTPConfigured: s.cfg.SMTPConfigured})
}

func (s *Server) slackStatus(c *gin.Context) {
	c.JSON(http.StatusOK, gin.H{"enabled": s.cfg.SlackEnabled, "configured": s.cfg.SlackConfigured})
}

// testChannel sends a test message now and reports the channel's own error.
func (s *Server) testChannel(channel string, configured func() bool, howto string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if !configured() {
			fail(c, http.StatusBadRequest, channel+" is not configured: "+howto)
			return
		}
		if err := s.notes.Test(c.Request.Context(), channel); err != nil {
			fail(c, http.StatusBadGateway, channel+" test failed: "+err.Error())
			return
		}
		c.JSON(http.StatusOK, gin.H{"sent": true, "channel": channel})
	}
}
