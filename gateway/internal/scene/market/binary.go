package market

import (
	"errors"

	"scenepay/gateway/internal/scene/scenebin"
)

// ErrCorrupt is wrapped by every decode error of this package's state.
var ErrCorrupt = errors.New("market: corrupt state")

// stateVersion is the first byte of every binary state encoding.
const stateVersion = 1

// The encoding helpers are shared with the other scene packages.
var (
	appendU64 = scenebin.AppendU64
	appendU32 = scenebin.AppendU32
	appendStr = scenebin.AppendStr
)

type reader = scenebin.Reader

func newReader(b []byte) *reader { return scenebin.NewReader(b, ErrCorrupt, MaxIDLen, stateVersion) }
