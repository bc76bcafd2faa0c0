package receiver

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/alertrca/alertrca/store"
)

// Chatter answers questions about incidents in stored sessions.
type Chatter interface {
	Ask(ctx context.Context, sessionID, message, anomalyID string) (string, *store.ChatSession, error)
	Session(ctx context.Context, id string) (*store.ChatSession, error)
}

// MaxChatChars is the longest question accepted.
const MaxChatChars = 4000

type chatRequest struct {
	Message   string         `json:"message"`
	Context   map[string]any `json:"context"`
	SessionID *string        `json:"session_id"`
}

// chatAuth: LLM calls cost money, so with API_TOKEN set the chat needs it too.
func (s *Server) chatAuth(c *gin.Context) {
	if s.cfg.APIToken != "" {
		s.checkAPIToken(c)
	}
}

func (s *Server) chat(c *gin.Context) {
	var req chatRequest
	if err := c.ShouldBindJSON(&req); err != nil {
		fail(c, http.StatusBadRequest, `body must be JSON {"message": "...", "context": {"anomaly_id": "..."}, "session_id": null}`)
		return
	}
	if n := utf8.RuneCountInString(strings.TrimSpace(req.Message)); n == 0 || n > MaxChatChars {
		fail(c, http.StatusBadRequest, "message must be 1 to "+strconv.Itoa(MaxChatChars)+" characters long")
		return
	}
	anomalyID, _ := req.Context["anomaly_id"].(string)
	sessionID := ""
	if req.SessionID != nil {
		sessionID = *req.SessionID
	}
	reply, session, err := s.chatter.Ask(c.Request.Context(), sessionID, req.Message, anomalyID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		fail(c, http.StatusNotFound, err.Error())
		return
	case err != nil:
		s.log.Warn("chat failed", "session", sessionID, "err", err)
		fail(c, http.StatusBadGateway, "chat failed: "+err.Error())
		return
	}
	c.JSON(http.StatusOK, gin.H{"response": reply, "session_id": session.ID})
}

func (s *Server) chatSession(c *gin.Context) {
	cs, err := s.chatter.Session(c.Request.Context(), c.Param("session_id"))
	if errors.Is(err, store.ErrNotFound) {
		fail(c, http.StatusNotFound, "no chat session "+strconv.Quote(c.Param("session_id")))
		return
	}
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	c.JSON(http.StatusOK, cs)
}
