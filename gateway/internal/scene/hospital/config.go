package hospital

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"scenepay/internal/strictjson"
)

// Hard bounds on configurable sizes.
const (
	MaxIDLen      = 64   // bytes of any id (deposit, account, order, item code, bill)
	itemsMaxLimit = 256  // item types
	legsMaxLimit  = 32   // holds per deposit
	ordersLimit   = 4096 // service orders remembered per deposit
	maxFen        = int64(^uint64(0) >> 1)
)

// ItemType is a pay-first item (registration fee, test, medicine). A fixed
// price item must be paid exactly; otherwise the amount must lie within
// MinFen..MaxFen.
type ItemType struct {
	Code     string `json:"code"`
	Name     string `json:"name"`
	FixedFen int64  `json:"fixed_fen,omitempty"`
	MinFen   int64  `json:"min_fen,omitempty"`
	MaxFen   int64  `json:"max_fen,omitempty"`
}

// Config is the hospital scene policy, versioned JSON pushed to kiosks as
// a retained MQTT message.
type Config struct {
	// Version is the operator's revision of this config (> 0).
	Version uint32 `json:"version"`
	// Items are the pay-first item types (at most 256, unique codes).
	Items []ItemType `json:"items"`
	// DepositMinFen is the smallest opening deposit or top-up.
	DepositMinFen int64 `json:"deposit_min_fen"`
	// DepositMaxFen caps the remaining (uncaptured) amount of a deposit.
	DepositMaxFen int64 `json:"deposit_max_fen"`
	// LowBalanceFen: when the remaining deposit falls below it, the
	// decision carries a low-balance notice for the kiosk topic.
	LowBalanceFen int64 `json:"low_balance_fen"`
	// PauseBelowFen: while the remaining deposit is below it, only
	// emergency orders are captured (<= LowBalanceFen).
	PauseBelowFen int64 `json:"pause_below_fen"`
	// DepositExpiryHours: an open deposit without activity for this long is
	// released by the sweep (a forgotten deposit).
	DepositExpiryHours int64 `json:"deposit_expiry_hours"`
	// LegsMax bounds the holds of one deposit (the opening hold and top-ups).
	LegsMax int `json:"legs_max"`
	// OrdersMax bounds the service orders remembered per deposit for
	// idempotency (oldest forgotten first).
	OrdersMax int `json:"orders_max"`
	// PooledFundPayer and PersonalAccountPayer name the insurance payers of
	// the pooled-fund and personal-account legs for settlement.
	PooledFundPayer      string `json:"pooled_fund_payer"`
	PersonalAccountPayer string `json:"personal_account_payer"`
}

const fenPerCNY = 100

// DefaultConfig: registration 12 CNY, tests 1..5,000, medicine 0.01..20,000;
// deposits 100..200,000 CNY, notice below 1,000, pause below 200, expiry
// after 30 days without activity, 16 holds and 1,024 orders per deposit.
func DefaultConfig() Config {
	return Config{
		Version: 1,
		Items: []ItemType{
			{Code: "REG", Name: "registration fee", FixedFen: 12 * fenPerCNY},
			{Code: "LAB", Name: "laboratory test", MinFen: 1 * fenPerCNY, MaxFen: 5000 * fenPerCNY},
			{Code: "MED", Name: "medicine", MinFen: 1, MaxFen: 20000 * fenPerCNY},
		},
		DepositMinFen:        100 * fenPerCNY,
		DepositMaxFen:        200000 * fenPerCNY,
		LowBalanceFen:        1000 * fenPerCNY,
		PauseBelowFen:        200 * fenPerCNY,
		DepositExpiryHours:   30 * 24,
		LegsMax:              16,
		OrdersMax:            1024,
		PooledFundPayer:      "insurance-pooled-fund",
		PersonalAccountPayer: "insurance-personal-account",
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("hospital: invalid config")

func cfgErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
}

func validID(s string) bool { return len(s) > 0 && len(s) <= MaxIDLen }

// Validate checks every field against its bound.
func (c *Config) Validate() error {
	switch {
	case c.Version == 0:
		return cfgErr("version must be > 0")
	case len(c.Items) > itemsMaxLimit:
		return cfgErr("%d items, at most %d", len(c.Items), itemsMaxLimit)
	case c.DepositMinFen < 1 || c.DepositMaxFen < c.DepositMinFen:
		return cfgErr("need 1 <= deposit_min_fen <= deposit_max_fen")
	case c.PauseBelowFen < 0 || c.LowBalanceFen < c.PauseBelowFen:
		return cfgErr("need 0 <= pause_below_fen <= low_balance_fen")
	case c.DepositExpiryHours < 1 || c.DepositExpiryHours > 24*3660:
		return cfgErr("deposit_expiry_hours %d not in 1..%d", c.DepositExpiryHours, 24*3660)
	case c.LegsMax < 1 || c.LegsMax > legsMaxLimit:
		return cfgErr("legs_max %d not in 1..%d", c.LegsMax, legsMaxLimit)
	case c.OrdersMax < 1 || c.OrdersMax > ordersLimit:
		return cfgErr("orders_max %d not in 1..%d", c.OrdersMax, ordersLimit)
	case !validID(c.PooledFundPayer) || !validID(c.PersonalAccountPayer):
		return cfgErr("insurance payers must be 1..%d bytes", MaxIDLen)
	}
	seen := map[string]bool{}
	for i, it := range c.Items {
		switch {
		case !validID(it.Code) || len(it.Name) > 256:
			return cfgErr("item %d: code 1..%d bytes, name at most 256", i, MaxIDLen)
		case seen[it.Code]:
			return cfgErr("item %q twice", it.Code)
		case it.FixedFen < 0 || it.MinFen < 0 || it.MaxFen < 0:
			return cfgErr("item %q: negative price", it.Code)
		case it.FixedFen > 0 && (it.MinFen != 0 || it.MaxFen != 0):
			return cfgErr("item %q: fixed price or a range, not both", it.Code)
		case it.FixedFen == 0 && (it.MinFen < 1 || it.MaxFen < it.MinFen):
			return cfgErr("item %q: need 1 <= min_fen <= max_fen", it.Code)
		}
		seen[it.Code] = true
	}
	return nil
}

// DecodeConfig decodes JSON strictly: unknown fields, trailing data and
// invalid values are errors.
func DecodeConfig(b []byte) (Config, error) {
	var c Config
	if err := strictjson.Decode(b, &c); err != nil {
		return Config{}, cfgErr("%v", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// EncodeJSON is the retained-message form of the config.
func (c *Config) EncodeJSON() ([]byte, error) { return json.Marshal(c) }

// Rules is a validated, immutable Config ready for the hot path.
type Rules struct {
	cfg    Config
	items  map[string]ItemType
	expiry time.Duration
}

// NewRules validates c and compiles it.
func NewRules(c Config) (*Rules, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	c.Items = append([]ItemType(nil), c.Items...)
	r := &Rules{cfg: c, items: make(map[string]ItemType, len(c.Items)), expiry: time.Duration(c.DepositExpiryHours) * time.Hour}
	for _, it := range c.Items {
		r.items[it.Code] = it
	}
	return r, nil
}

// Config returns the configuration the rules were compiled from.
func (r *Rules) Config() Config { return r.cfg }
