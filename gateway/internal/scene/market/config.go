package market

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"scenepay/internal/strictjson"

	"github.com/shopspring/decimal"
)

// Hard bounds on configurable sizes: a config can never ask for unbounded
// memory, whatever an operator types.
const (
	MaxIDLen             = 64      // bytes of any account, stall, code, payment or refund id
	usedCodesMaxLimit    = 1 << 20 // entries
	paymentsMaxLimit     = 1 << 20 // entries
	refundsPerPaymentCap = 64      // entries
	stallCodesMaxLimit   = 1 << 20 // entries
	maxRatioPlaces       = 6       // decimal places of the fee ratio
	maxLifetimeSeconds   = 3600
)

// Config is the market scene policy. Operators change it without a
// restart; the gateway pushes its JSON to stall terminals as a retained
// MQTT message, so the JSON field names are part of the contract.
type Config struct {
	// Version is the operator's revision of this config (> 0).
	Version uint32 `json:"version"`
	// CodeLifetimeSeconds is how long a consumer payment code stays valid
	// after its issue time (DOMAIN.md: short-lived; default 60 s).
	CodeLifetimeSeconds int64 `json:"code_lifetime_seconds"`
	// CodeSkewSeconds is how far a code's issue time may lie ahead of
	// gateway time (phone clocks drift; default 5 s).
	CodeSkewSeconds int64 `json:"code_skew_seconds"`
	// UsedCodesMax bounds the set of used consumer codes kept until they
	// expire (entries per shard).
	UsedCodesMax int `json:"used_codes_max"`
	// DynamicCodeLifetimeSeconds is how long a merchant-presented dynamic
	// code is fresh; a scan of an older one is treated as a screenshot,
	// which counts as static (PBoC notice 259).
	DynamicCodeLifetimeSeconds int64 `json:"dynamic_code_lifetime_seconds"`
	// Daily limits per customer and QR class in fen (PBoC 2018). LimitAFen
	// is used for class A when the customer has no agreed limit of its own.
	LimitAFen int64 `json:"limit_a_fen"`
	LimitBFen int64 `json:"limit_b_fen"`
	LimitCFen int64 `json:"limit_c_fen"`
	LimitDFen int64 `json:"limit_d_fen"`
	// FeeRatio is the market operator's management fee as a fraction of
	// each payment, 0..1 with at most 6 decimal places ("0.006" = 0.6%).
	FeeRatio decimal.Decimal `json:"fee_ratio"`
	// OperatorMerchant is the merchant id of the market operator, payee of
	// the fee leg.
	OperatorMerchant string `json:"operator_merchant"`
	// PaymentsMax bounds the refund ledger (payments per shard, oldest
	// evicted first: a refund of an evicted payment is ORIGINAL_NOT_FOUND).
	PaymentsMax int `json:"payments_max"`
	// RefundsPerPaymentMax bounds the refunds remembered per payment.
	RefundsPerPaymentMax int `json:"refunds_per_payment_max"`
	// StallCodesMax bounds the stall code registry (entries).
	StallCodesMax int `json:"stall_codes_max"`
}

const fenPerCNY = 100

// DefaultConfig returns the DOMAIN.md defaults: 60 s consumer codes, PBoC
// class limits B 5,000, C 1,000, D 500 CNY per day, class A without an
// agreement limited like B, and a 1% management fee.
func DefaultConfig() Config {
	return Config{
		Version:                    1,
		CodeLifetimeSeconds:        60,
		CodeSkewSeconds:            5,
		UsedCodesMax:               1 << 16,
		DynamicCodeLifetimeSeconds: 60,
		LimitAFen:                  5000 * fenPerCNY,
		LimitBFen:                  5000 * fenPerCNY,
		LimitCFen:                  1000 * fenPerCNY,
		LimitDFen:                  500 * fenPerCNY,
		FeeRatio:                   decimal.RequireFromString("0.01"),
		OperatorMerchant:           "market-operator",
		PaymentsMax:                1 << 16,
		RefundsPerPaymentMax:       8,
		StallCodesMax:              1 << 14,
	}
}

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("market: invalid config")

func cfgErr(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrConfig, fmt.Sprintf(format, a...))
}

// Validate checks every field against its bound.
func (c *Config) Validate() error {
	_, _, err := c.check()
	return err
}

func (c *Config) check() (num, den int64, err error) {
	switch {
	case c.Version == 0:
		return 0, 0, cfgErr("version must be > 0")
	case c.CodeLifetimeSeconds < 1 || c.CodeLifetimeSeconds > maxLifetimeSeconds:
		return 0, 0, cfgErr("code_lifetime_seconds %d not in 1..%d", c.CodeLifetimeSeconds, maxLifetimeSeconds)
	case c.CodeSkewSeconds < 0 || c.CodeSkewSeconds > maxLifetimeSeconds:
		return 0, 0, cfgErr("code_skew_seconds %d not in 0..%d", c.CodeSkewSeconds, maxLifetimeSeconds)
	case c.DynamicCodeLifetimeSeconds < 1 || c.DynamicCodeLifetimeSeconds > maxLifetimeSeconds:
		return 0, 0, cfgErr("dynamic_code_lifetime_seconds %d not in 1..%d", c.DynamicCodeLifetimeSeconds, maxLifetimeSeconds)
	case c.UsedCodesMax < 1 || c.UsedCodesMax > usedCodesMaxLimit:
		return 0, 0, cfgErr("used_codes_max %d not in 1..%d", c.UsedCodesMax, usedCodesMaxLimit)
	case c.PaymentsMax < 1 || c.PaymentsMax > paymentsMaxLimit:
		return 0, 0, cfgErr("payments_max %d not in 1..%d", c.PaymentsMax, paymentsMaxLimit)
	case c.RefundsPerPaymentMax < 1 || c.RefundsPerPaymentMax > refundsPerPaymentCap:
		return 0, 0, cfgErr("refunds_per_payment_max %d not in 1..%d", c.RefundsPerPaymentMax, refundsPerPaymentCap)
	case c.StallCodesMax < 1 || c.StallCodesMax > stallCodesMaxLimit:
		return 0, 0, cfgErr("stall_codes_max %d not in 1..%d", c.StallCodesMax, stallCodesMaxLimit)
	case len(c.OperatorMerchant) == 0 || len(c.OperatorMerchant) > MaxIDLen:
		return 0, 0, cfgErr("operator_merchant must be 1..%d bytes", MaxIDLen)
	}
	for _, l := range []struct {
		name string
		v    int64
	}{{"limit_a_fen", c.LimitAFen}, {"limit_b_fen", c.LimitBFen}, {"limit_c_fen", c.LimitCFen}, {"limit_d_fen", c.LimitDFen}} {
		if l.v < 0 {
			return 0, 0, cfgErr("%s is negative", l.name)
		}
	}
	return ratioParts(c.FeeRatio)
}

// ratioParts turns a decimal ratio into num/den with den = 10^k, k <= 6,
// so that the hot path splits with exact integer arithmetic.
func ratioParts(d decimal.Decimal) (num, den int64, err error) {
	if d.Sign() < 0 || d.GreaterThan(decimal.NewFromInt(1)) {
		return 0, 0, cfgErr("fee_ratio %s not in 0..1", d.String())
	}
	coef := d.Coefficient()
	exp := d.Exponent()
	ten := big.NewInt(10)
	for exp < 0 && coef.Sign() != 0 && new(big.Int).Rem(coef, ten).Sign() == 0 {
		coef.Quo(coef, ten)
		exp++
	}
	if coef.Sign() == 0 {
		return 0, 1, nil
	}
	if exp >= 0 { // ratio is exactly 1 (range checked above)
		return 1, 1, nil
	}
	if -exp > maxRatioPlaces || !coef.IsInt64() {
		return 0, 0, cfgErr("fee_ratio %s has more than %d decimal places", d.String(), maxRatioPlaces)
	}
	den = 1
	for i := int32(0); i < -exp; i++ {
		den *= 10
	}
	return coef.Int64(), den, nil
}

// DecodeConfig decodes JSON strictly: unknown fields, trailing data and
// invalid values are errors, so a typo in an operator's change is refused
// rather than silently ignored.
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

// Rules is a validated Config with the fee ratio compiled to integers.
// It is immutable and may be shared by every shard.
type Rules struct {
	cfg              Config
	feeNum, feeDen   uint64
	lifetime, skew   int64 // seconds
	dynamicLifetime  int64 // seconds
	limits           [5]int64
	operatorMerchant string
}

// NewRules validates c and compiles it.
func NewRules(c Config) (*Rules, error) {
	num, den, err := c.check()
	if err != nil {
		return nil, err
	}
	return &Rules{
		cfg:              c,
		feeNum:           uint64(num),
		feeDen:           uint64(den),
		lifetime:         c.CodeLifetimeSeconds,
		skew:             c.CodeSkewSeconds,
		dynamicLifetime:  c.DynamicCodeLifetimeSeconds,
		limits:           [5]int64{0, c.LimitAFen, c.LimitBFen, c.LimitCFen, c.LimitDFen},
		operatorMerchant: c.OperatorMerchant,
	}, nil
}

// Config returns the configuration the rules were compiled from.
func (r *Rules) Config() Config { return r.cfg }
