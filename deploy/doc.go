// Package deploy holds the deployment kit (broker configuration, and later
// service units and dashboards). Its tests start private instances from these
// files and check that they enforce what docs/operations.md promises.
package deploy
