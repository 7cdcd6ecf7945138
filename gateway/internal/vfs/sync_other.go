//go:build !linux

package vfs

// Sync is fsync(2) where fdatasync(2) is not available (sync_linux.go).
func (f osFile) Sync() error { return f.File.Sync() }
