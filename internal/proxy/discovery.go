package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kseal/kseal/internal/codec"
)

// This file holds broker discovery: the loop that asks the upstream cluster
// for its brokers at start and every metadataRefresh, and kseal's own
// Metadata client it uses (also for topic ids, topics.go), with the
// outcome recorded for Ready (noteOwn).

// discover learns the upstream brokers now (retrying with backoff until it
// succeeds, so broker ports are bound early even when the cluster starts
// after kseal) and then every metadataRefresh, so a broker added to the
// cluster gets its port on every kseal replica without waiting for a
// client's Metadata request to pass through this one.
func (vc *virtualCluster) discover() {
	backoff := 250 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(vc.srv.ctx, vc.cfg.Upstream.DialTimeout.Std())
		err := vc.guard(sideDiscovery, vc.log, func() error { return vc.refreshMetadata(ctx) })
		cancel()
		if vc.srv.ctx.Err() != nil {
			return // shutting down
		}
		wait := metadataRefresh
		switch {
		case err == nil:
			backoff = 250 * time.Millisecond
		case isSASLError(err):
			// Logged once by noteOwn. Only a change of configuration
			// (a fixed password file, a reconfigured listener) helps:
			// try again at the refresh interval.
		default:
			vc.log.Warn("cannot reach upstream cluster", "error", err.Error(), "retryIn", backoff.String())
			wait = backoff
			backoff = min(backoff*2, 10*time.Second)
		}
		select {
		case <-time.After(wait):
		case <-vc.srv.ctx.Done():
			return
		}
	}
}

// metadataRefresh is how often kseal asks the cluster for its brokers.
const metadataRefresh = 30 * time.Second

// refreshMetadata asks the upstream cluster for its brokers and records
// them (binding their proxy ports) through MapBroker.
func (vc *virtualCluster) refreshMetadata(ctx context.Context) error {
	return vc.metadata(ctx, false)
}

// metadata asks the upstream cluster for its brokers (and, with
// allTopics, every topic's id and name) and records what it learns. When
// every bootstrap server fails, the error is an authentication outcome
// (isSASLError) if any server gave one, so the caller can tell "log in
// differently" from "cannot reach".
func (vc *virtualCluster) metadata(ctx context.Context, allTopics bool) error {
	select { // waiting for another refresh counts against ctx too
	case vc.refreshSem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("waiting for another metadata refresh: %w", ctx.Err())
	}
	defer func() { <-vc.refreshSem }()
	var lastErr, saslErr error
	for _, addr := range vc.cfg.Upstream.BootstrapServers {
		err := vc.fetchMetadata(ctx, addr, allTopics)
		if err == nil {
			vc.reachedUpstream.Store(true)
			vc.ownReached.Store(true)
			vc.noteOwn(nil)
			return nil
		}
		lastErr = err
		if saslErr == nil && isSASLError(err) {
			saslErr = err
		}
	}
	if saslErr != nil {
		lastErr = saslErr
	}
	vc.noteOwn(lastErr)
	return lastErr
}

const metadataVersion = 12

func (vc *virtualCluster) fetchMetadata(ctx context.Context, addr string, allTopics bool) error {
	c, err := vc.ownConn(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	req := kmsg.NewPtrMetadataRequest()
	req.SetVersion(metadataVersion)
	if !allTopics {
		req.Topics = []kmsg.MetadataRequestTopic{} // brokers only; nil asks for all
	}
	corr := int32(100) // after any SASL exchange's ids
	body, err := ownRoundTrip(c, int16(kmsg.Metadata), metadataVersion, corr, req, vc.cfg.Limits.MaxFrameBytes)
	if err != nil {
		// A SASL listener closes a connection whose first request is
		// neither ApiVersions nor SaslHandshake: ask it whether that is
		// why, so the log can say what to configure.
		if vc.sasl == nil && closedByPeer(err) {
			c.Close()
			if req := vc.probeSASL(ctx, addr); req != nil {
				return req
			}
		}
		return fmt.Errorf("metadata exchange with %s: %w", addr, err)
	}
	// Brokers (through MapBroker) and topic ids learned in one walk.
	if _, _, err := codec.RewriteMetadata(nil, body, metadataVersion, vc, vc.topics.learn); err != nil {
		return fmt.Errorf("metadata response from %s: %w", addr, err)
	}
	return nil
}

// noteOwn records the outcome of kseal's own upstream request for Ready,
// and logs authentication outcomes once per change instead of at every
// retry: a listener requiring SASL without upstream.sasl (a hint; it also
// counts as reaching the cluster), a refused login (an error naming the
// mechanism and the broker's message), and the recovery from either.
func (vc *virtualCluster) noteOwn(err error) {
	var required *saslRequiredError
	var login *saslLoginError
	vc.ownMu.Lock()
	prev := vc.ownState
	state := prev // a network failure does not change what is known of the login
	switch {
	case err == nil:
		state = ""
	case errors.As(err, &required):
		state = "required"
		vc.reachedUpstream.Store(true)
	case errors.As(err, &login):
		state = "login failed: " + login.reason
	}
	vc.ownErr, vc.ownState = err, state
	vc.ownMu.Unlock()
	if state == prev {
		if err != nil && state != "" {
			vc.log.Debug("kseal's own upstream request failed again", "error", err.Error())
		}
		return
	}
	switch {
	case required != nil:
		vc.log.Warn("the upstream cluster requires SASL and upstream.sasl is not set: kseal cannot discover brokers or resolve topic ids on its own, and learns brokers only from the Metadata responses clients receive; set upstream.sasl (clients' own SASL passes through either way)",
			"broker", required.addr, "mechanisms", required.mechanismList())
	case login != nil:
		vc.log.Error("upstream SASL login failed: kseal cannot discover brokers or resolve topic ids on its own; check upstream.sasl",
			"mechanism", login.mechanism, "user", vc.sasl.cfg.Username, "broker", login.addr, "error", login.reason)
	case err == nil && strings.HasPrefix(prev, "login failed"):
		vc.log.Info("upstream SASL login succeeded", "mechanism", vc.sasl.cfg.Mechanism)
	case err == nil:
		vc.log.Info("the upstream cluster answers kseal's own Metadata requests")
	}
}
