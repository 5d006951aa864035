package detkey

import (
	"errors"
	"fmt"
	"math"
)

// Config is the `encryption.keyTopic` section (docs/config.md).
type Config struct {
	// Name is the key topic (DefaultTopic).
	Name string `yaml:"name"`
	// ReplicationFactor of the key topic when kseal creates it; 0 means
	// min(3, brokers).
	ReplicationFactor int `yaml:"replicationFactor"`
	// MaxKeys bounds the key records read and the keys kept
	// (DefaultMaxKeys).
	MaxKeys int `yaml:"maxKeys"`
	// MaxFirstOffsets bounds the partitions whose first encrypted offset
	// is kept (DefaultMaxFirstOffsets).
	MaxFirstOffsets int `yaml:"maxFirstOffsets"`
}

// Validate checks the section; each error names its key ("name: ...").
func (c Config) Validate() error {
	var errs []error
	if c.Name != "" {
		if err := CheckTopicName(c.Name); err != nil {
			errs = append(errs, fmt.Errorf("name: %w", err))
		}
	}
	if c.ReplicationFactor < 0 || c.ReplicationFactor > math.MaxInt16 {
		errs = append(errs, fmt.Errorf("replicationFactor: %d must be 0 (min(3, brokers)) or a replica count up to %d", c.ReplicationFactor, math.MaxInt16))
	}
	if c.MaxKeys < 0 {
		errs = append(errs, fmt.Errorf("maxKeys: %d must not be negative", c.MaxKeys))
	}
	if c.MaxFirstOffsets < 0 {
		errs = append(errs, fmt.Errorf("maxFirstOffsets: %d must not be negative", c.MaxFirstOffsets))
	}
	return errors.Join(errs...)
}

// Options returns the Store options the section sets (the others zero:
// defaults). Call Validate first.
func (c Config) Options() Options {
	return Options{Topic: c.Name, ReplicationFactor: int16(c.ReplicationFactor), MaxKeys: c.MaxKeys, MaxFirstOffsets: c.MaxFirstOffsets}
}
