package journal

// Preallocated segments. A group commit that appends to a file makes its
// fsync flush the file's new size and block map with the data (an ext4
// journal commit per group). Writing over blocks that are already part of
// the file needs only the data flushed: on the project's ext4 disk an
// fsync after a 4 KB write costs about 55 us of CPU and 100 us of wall
// time over written blocks, against 90-120 us and 150-210 us when the
// write grows the file (PostgreSQL recycles zero-filled WAL segments for
// the same reason).
//
// With Options.Preallocate a spare file (SpareName) is zero-filled to
// SegmentBytesMax in the background, in paced chunks (paced.go). A
// rotation writes the new segment's header into the spare, fsyncs it and
// renames it to the segment's name,
// so the segment exists durably with its header before any record goes
// into it, as with createSegment. Zero bytes never verify as a record, so
// after a crash the unused zero tail of the last segment is a torn tail and
// Open cuts it. The old segment is cut to its used length at rotation, and
// the active one at Close, because a segment that is not the last must end
// at its last record. When no spare is ready a rotation creates the segment
// as without the option (its groups then grow the file).
//
// A segment that grows (the first of a new journal, the last one at Open,
// or one created without a spare) is left early: the first group write
// after a spare is ready rotates into it, so a gateway's fsyncs flush
// data only from a few seconds after its start (at once when Open found a
// spare), not from its first SegmentBytesMax of records on.
//
// After a rotation into a spare the next fill starts only when the new
// segment is half full (Journal.spareAt), not at once: a restart that
// rotates early would otherwise write a second SegmentBytesMax of zeros
// while it is busiest, and half a segment of records leaves the fill
// ample time. After a rotation that found no spare it starts at once.

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"scenepay/gateway/internal/vfs"
)

// SpareName is the zero-filled file the next rotation takes (in the
// journal's directory). It never holds a record. Close keeps a spare that
// is filled, and Open takes it as ready (a restart does not fill another);
// Open removes one of another size (a fill cut short by a crash, or a
// changed SegmentBytesMax).
const SpareName = "segment.spare"

// adoptSpare opens the spare left in dir if it has the full size, and
// removes it otherwise. It returns nil when there is none to take.
func adoptSpare(o *Options) (vfs.File, error) {
	path := filepath.Join(o.Dir, SpareName)
	fi, err := o.FS.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err == nil && fi.Size() == o.SegmentBytesMax {
		if f, err := o.FS.OpenFile(path, os.O_RDWR, 0); err == nil {
			return f, nil
		}
	}
	return nil, removeSpare(o)
}

// removeSpare removes a spare left in dir.
func removeSpare(o *Options) error {
	err := o.FS.Remove(filepath.Join(o.Dir, SpareName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &IOError{Op: "remove", Path: filepath.Join(o.Dir, SpareName), Err: err}
	}
	return nil
}

// prepareSpare starts filling a spare in the background, unless one is
// ready or being filled, or the option is off.
func (j *Journal) prepareSpare() {
	if !j.opts.Preallocate {
		return
	}
	j.spareMu.Lock()
	defer j.spareMu.Unlock()
	if j.spare != nil || j.spareBusy || j.spareStop {
		return
	}
	j.spareBusy = true
	j.spareWG.Add(1)
	go func() {
		defer j.spareWG.Done()
		f, err := j.fillSpare()
		j.spareMu.Lock()
		defer j.spareMu.Unlock()
		j.spareBusy = false
		if err != nil || j.spareStop {
			if f != nil {
				f.Close()
			}
			return // the next rotation creates its segment the plain way
		}
		j.spare = f
	}()
}

// fillSpare creates the spare and writes SegmentBytesMax zero bytes into
// it through a pacedWriter.
func (j *Journal) fillSpare() (vfs.File, error) {
	path := filepath.Join(j.opts.Dir, SpareName)
	sf, err := j.opts.FS.Create(path)
	if err != nil {
		return nil, err
	}
	stop := func() bool {
		j.spareMu.Lock()
		defer j.spareMu.Unlock()
		return j.spareStop
	}
	w := &pacedWriter{f: sf, stop: stop}
	zero := make([]byte, pacedChunkBytes)
	for left := j.opts.SegmentBytesMax; left > 0; left -= pacedChunkBytes {
		if _, err := w.Write(zero[:min(int64(pacedChunkBytes), left)]); err != nil {
			sf.Close()
			return nil, err
		}
	}
	if err := sf.Sync(); err != nil {
		sf.Close()
		return nil, err
	}
	return sf, nil
}

// spareReady reports whether a spare is ready to take.
func (j *Journal) spareReady() bool {
	j.spareMu.Lock()
	defer j.spareMu.Unlock()
	return j.spare != nil
}

// takeSpare returns the ready spare, or nil.
func (j *Journal) takeSpare() vfs.File {
	j.spareMu.Lock()
	defer j.spareMu.Unlock()
	f := j.spare
	j.spare = nil
	return f
}

// segmentFromSpare makes the spare segment name with first LSN first: the
// header is written over its first bytes and fsynced, then the file is
// renamed and the directory fsynced. It returns the segment open for
// writing after its header.
func (j *Journal) segmentFromSpare(sp vfs.File, name string, first uint64) (vfs.File, error) {
	dir := j.opts.Dir
	_, err := sp.Seek(0, io.SeekStart)
	if err == nil {
		_, err = sp.Write(appendSegmentHeader(nil, first))
	}
	if err == nil {
		err = sp.Sync()
	}
	if cerr := sp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = j.opts.FS.Rename(filepath.Join(dir, SpareName), filepath.Join(dir, name))
	}
	if err == nil {
		err = j.opts.FS.SyncDir(dir)
	}
	if err != nil {
		return nil, err
	}
	f, err := j.opts.FS.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(segmentHeaderLen, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// cutTail cuts the active segment to its used length and fsyncs it (a
// segment that is not the last must end at its last record).
func (j *Journal) cutTail() error {
	if !j.opts.Preallocate {
		return nil
	}
	if err := j.active.Truncate(j.segSize); err != nil {
		return &IOError{Op: "truncate", Path: j.active.Name(), Err: err, sticky: true}
	}
	if err := j.active.Sync(); err != nil {
		return &IOError{Op: "fsync", Path: j.active.Name(), Err: err, sticky: true}
	}
	return nil
}

// stopSpare stops the background fill (Close). A filled spare is kept for
// the next Open; a fill cut short is removed.
func (j *Journal) stopSpare() {
	j.spareMu.Lock()
	j.spareStop = true
	j.spareMu.Unlock()
	j.spareWG.Wait()
	if f := j.takeSpare(); f != nil {
		f.Close()
		return
	}
	if j.opts.Preallocate {
		removeSpare(&j.opts)
	}
}
