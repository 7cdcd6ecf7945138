package main

import (
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
)

// tokenFlags defines the flags of the operator API's two bearer tokens on
// fs, with defaults from the environment: the operator token (every route)
// and the wallet backend's token (only the stall code payment routes;
// gateway/internal/opapi/auth.go).
func tokenFlags(fs *flag.FlagSet) (operator, wallet *string) {
	operator = fs.String("operator-token-file", env("SCENEPAY_OPERATOR_TOKEN_FILE", ""), "operator API token file; default {data-dir}/operator.token, created if absent [SCENEPAY_OPERATOR_TOKEN_FILE]")
	wallet = fs.String("wallet-token-file", env("SCENEPAY_WALLET_TOKEN_FILE", ""), "wallet backend's token file (same format as the operator token's, created if absent): it may call only the stall code payment and refund routes; empty and no SCENEPAY_WALLET_TOKEN: those routes take the operator token only [SCENEPAY_WALLET_TOKEN_FILE]")
	return operator, wallet
}

// loadToken returns a bearer token: the value of the variable envName when
// it is set, else the hex text of file, which is created with a fresh
// random token when absent (loadOrCreateSecret: at least 32 hex
// characters, mode 0600).
func loadToken(envName, file string) (string, error) {
	if t := os.Getenv(envName); t != "" {
		return t, nil
	}
	s, err := loadOrCreateSecret(file, 24)
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(s), nil
}

// loadWalletToken returns the wallet backend's token by the operator
// token's rules (SCENEPAY_WALLET_TOKEN, else file), or "" when neither is
// set. A wallet token equal to the operator token would give the wallet
// backend every route: refused.
func loadWalletToken(file, operator string) (string, error) {
	if os.Getenv("SCENEPAY_WALLET_TOKEN") == "" && file == "" {
		return "", nil
	}
	t, err := loadToken("SCENEPAY_WALLET_TOKEN", file)
	if err != nil {
		return "", fmt.Errorf("wallet token: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(t), []byte(operator)) == 1 {
		return "", errors.New("wallet token: it is the operator token; give the wallet backend a token of its own (openssl rand -hex 32)")
	}
	return t, nil
}
