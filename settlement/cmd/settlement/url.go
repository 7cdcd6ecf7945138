package main

import "net/url"

// parseURL returns db with any password replaced, or "" if db is not a URL.
func parseURL(db string) (string, error) {
	u, err := url.Parse(db)
	if err != nil || u.Scheme == "" {
		return "", err
	}
	return u.Redacted(), nil
}
