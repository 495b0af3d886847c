package audit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/egressd/egressd/vault/storage"
)

// The audit journal is the request rows' write-ahead file, on this node's
// disk whatever the backend (Config.JournalPath; by default next to the
// bbolt file: its path plus ".audit-journal"). A group of rows is made
// durable with one write and one fdatasync here; the indexer moves the
// rows into the store's audit buckets (rows and indexes) later, in
// transactions of a thousand rows instead of one per group. Only the
// process that has the vault open opens it.
//
// Layout: a 16-byte header (the magic, then the epoch as 8 little-endian
// bytes), then records: length (4 bytes LE), CRC-32C (4 bytes LE) of the
// epoch's 8 bytes followed by the payload, then the payload (a row's
// full binary encoding, bin.go; a journal left by an egressd from
// before it holds JSON rows, which read as well). The file is written from the header on and, once every row in
// it is in the store, rewound: the epoch is incremented and records are
// written again from the start, over the old ones. A record of an older
// epoch fails its CRC under the new one, as does a torn record, so reading
// stops at the first record that is not of the current epoch and whole.
//
// Every indexer transaction also records in the store how far into
// the journal it has put rows (the epoch and the offset after the last
// record it took, metaAuditJournal): a replay puts only the records after
// that point. Putting a row again that is already indexed is not harmless:
// a power loss may have taken a final row's unsynced record (written by
// AppendLater) after the indexer committed it, and replaying the
// provisional row before it would put that back over the final one; and a
// row Prune deleted must not come back.
//
// The file is filled with zeros to journalPrealloc at open: writing over
// allocated blocks lets fdatasync skip the file-size metadata an append
// needs (measured here: 100 µs a sync against 160 µs appending).

const (
	journalMagic        = "EGAJRNL1"
	journalHeaderLen    = 16
	journalRecHeaderLen = 8
	// journalMaxRecord bounds one record when reading: a longer length is
	// a torn or foreign record.
	journalMaxRecord = 1 << 20
	// journalPrealloc is the size the file is filled to with zeros.
	journalPrealloc = 4 << 20
	// journalWrapAt is the offset past which the writer rewinds the file
	// (after the indexer has committed everything in it).
	journalWrapAt = journalPrealloc - 256<<10
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// metaAuditJournal is the key in bMeta of the journal position the audit
// buckets hold every row up to (journalPos.encode): the key of a store
// opened without a node id (Config.NodeID), one node's. A store opened
// with one keeps its position under journalPosKey(id), so replicas that
// share a backend each keep their own journal's; the first open with a
// node id moves this key there (a single-node vault from before node ids).
var metaAuditJournal = []byte("audit_journal")

// journalPosKey is the key in bMeta of node's journal position:
// "audit_journal", a NUL, the node id; the single key without one.
func journalPosKey(node string) []byte {
	if node == "" {
		return metaAuditJournal
	}
	return append(append(append([]byte(nil), metaAuditJournal...), 0), node...)
}

// journalPos is a place in the journal: the end of a record of an epoch.
type journalPos struct {
	epoch uint64
	off   int64
}

func (p journalPos) encode() []byte {
	b := binary.LittleEndian.AppendUint64(make([]byte, 0, 16), p.epoch)
	return binary.LittleEndian.AppendUint64(b, uint64(p.off))
}

// indexedPos reads the position under key (journalPosKey) the audit
// buckets hold every row of that journal up to (zero when none was
// recorded).
func indexedPos(meta storage.Bucket, key []byte) journalPos {
	v := meta.Get(key)
	if len(v) != 16 {
		return journalPos{}
	}
	return journalPos{binary.LittleEndian.Uint64(v), int64(binary.LittleEndian.Uint64(v[8:]))}
}

// journalRecord is a record read back: its payload and where it ends.
type journalRecord struct {
	payload []byte
	end     int64
}

// journal is the open file. It is used by one goroutine at a time (the
// committer, or Open before it starts).
type journal struct {
	f *os.File
	// posKey is where in bMeta the store records how far into this
	// journal its rows are indexed (journalPosKey of the node).
	posKey []byte
	epoch  uint64
	seed   uint32 // CRC-32C of epoch's 8 bytes: where every record's sum starts
	off    int64  // where the next record goes
	nosync bool
	buf    []byte
	// broken is the error of a failed write or sync: after it nothing is
	// written again (what reached the disk is unknown; a failed fsync must
	// not be retried as if nothing happened), so every later group fails.
	broken error
}

// openJournal opens (creating if absent) the journal at path and returns
// the current epoch's whole records, oldest first. The caller puts them
// into the store and then calls rewind.
func openJournal(path string, nosync bool) (*journal, []journalRecord, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("audit: journal: %w", err)
	}
	j := &journal{f: f, nosync: nosync}
	data, err := io.ReadAll(f)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("audit: journal: read %s: %w", path, err)
	}
	payloads, fresh, err := j.parse(data)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("audit: journal %s: %w", path, err)
	}
	if fresh {
		if err := j.rewind(); err != nil {
			f.Close()
			return nil, nil, err
		}
	}
	if len(data) < journalPrealloc {
		// Zeros to the preallocated size; a zero length ends the records.
		if _, err := f.WriteAt(make([]byte, journalPrealloc-len(data)), int64(len(data))); err != nil {
			f.Close()
			return nil, nil, fmt.Errorf("audit: journal: %w", err)
		}
		// A new or grown file: its size, and its name in the directory,
		// must be on disk before a row's fdatasync is trusted (fdatasync
		// does not write the directory entry of a file just created).
		if !nosync {
			if err := f.Sync(); err == nil {
				err = journalSyncDir(filepath.Dir(path))
			}
			if err != nil {
				f.Close()
				return nil, nil, fmt.Errorf("audit: journal: sync %s: %w", path, err)
			}
		}
	}
	return j, payloads, nil
}

// journalSyncDir fsyncs a directory; tests replace it to see it called.
var journalSyncDir = func(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// parse reads the header and the whole records of its epoch, and sets off
// after the last. An empty file (or one of zeros: created, never synced
// past its fill) is a new journal; a file that does not start with the
// magic is not ours and is refused rather than overwritten.
func (j *journal) parse(data []byte) (records []journalRecord, fresh bool, err error) {
	if len(data) == 0 || allZero(data[:min(len(data), journalHeaderLen)]) {
		return nil, true, nil
	}
	if len(data) >= journalHeaderLen && string(data[:len(journalMagic)-1]) == journalMagic[:len(journalMagic)-1] && string(data[:len(journalMagic)]) != journalMagic {
		// Another version of the format: its rows may not be in the
		// vault yet, so it must not be moved away or overwritten.
		return nil, false, fmt.Errorf("format %q, this egressd reads %q: written by a newer egressd. Its rows may not be in the vault yet: start and stop that version cleanly once (it puts them in), then move the journal away", data[:len(journalMagic)], journalMagic)
	}
	if len(data) < journalHeaderLen || string(data[:len(journalMagic)]) != journalMagic {
		return nil, false, errors.New("not an audit journal (bad magic); move it away to start a new one")
	}
	j.setEpoch(binary.LittleEndian.Uint64(data[len(journalMagic):journalHeaderLen]))
	j.off = journalHeaderLen
	var out []journalRecord
	for off := journalHeaderLen; off+journalRecHeaderLen <= len(data); {
		n := int(binary.LittleEndian.Uint32(data[off:]))
		sum := binary.LittleEndian.Uint32(data[off+4:])
		if n == 0 || n > journalMaxRecord || off+journalRecHeaderLen+n > len(data) {
			break
		}
		p := data[off+journalRecHeaderLen : off+journalRecHeaderLen+n]
		if j.sum(p) != sum {
			break
		}
		off += journalRecHeaderLen + n
		out = append(out, journalRecord{p, int64(off)})
		j.off = int64(off)
	}
	return out, false, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// setEpoch makes e the current epoch; its part of every record's sum is
// computed here once, not per record.
func (j *journal) setEpoch(e uint64) {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], e)
	j.epoch, j.seed = e, crc32.Update(0, crc32c, b[:])
}

// sum is a record's CRC-32C: of the epoch's 8 bytes, then the payload.
func (j *journal) sum(p []byte) uint32 { return crc32.Update(j.seed, crc32c, p) }

// rewind starts a new epoch: the header with the next epoch is written and
// synced, and records go from the start again. Everything in the file must
// be in the store, committed, before it is called.
func (j *journal) rewind() error {
	if j.broken != nil {
		return j.broken
	}
	var h [journalHeaderLen]byte
	copy(h[:], journalMagic)
	binary.LittleEndian.PutUint64(h[len(journalMagic):], j.epoch+1)
	if _, err := j.f.WriteAt(h[:], 0); err != nil {
		return j.fail(err)
	}
	if err := j.sync(); err != nil {
		return j.fail(err)
	}
	j.setEpoch(j.epoch + 1)
	j.off = journalHeaderLen
	return nil
}

// append writes the payloads as records, and syncs them when sync is set
// (which also syncs every record written before).
func (j *journal) append(payloads [][]byte, sync bool) error {
	if j.broken != nil {
		return j.broken
	}
	buf := j.buf[:0]
	for _, p := range payloads {
		if len(p) > journalMaxRecord {
			return fmt.Errorf("audit: row of %d bytes is over the journal's %d: %w", len(p), journalMaxRecord, ErrInvalid)
		}
		buf = binary.LittleEndian.AppendUint32(buf, uint32(len(p)))
		buf = binary.LittleEndian.AppendUint32(buf, j.sum(p))
		buf = append(buf, p...)
	}
	j.buf = buf[:0]
	if _, err := j.f.WriteAt(buf, j.off); err != nil {
		return j.fail(err)
	}
	if sync {
		if err := j.sync(); err != nil {
			return j.fail(err)
		}
	}
	j.off += int64(len(buf))
	if cap(j.buf) > 1<<20 {
		j.buf = nil // a burst's buffer is not kept
	}
	return nil
}

func (j *journal) sync() error {
	if j.nosync {
		return nil
	}
	return journalSync(j.f)
}

// journalSync is fdatasync; tests replace it to model what a power loss
// keeps of the file, or to fail a sync.
var journalSync = fdatasync

// fail marks the journal broken with err and returns it.
func (j *journal) fail(err error) error {
	j.broken = fmt.Errorf("audit: journal: %w (no audit row is written until egressd restarts)", err)
	return j.broken
}

func (j *journal) close() error { return j.f.Close() }

// openAuditJournal opens the journal at path, node's (Config.NodeID), and
// puts the rows it holds past the position the audit buckets are indexed
// up to (those a crash left unindexed) into the store, then rewinds it.
func (l *Log) openAuditJournal(path, node string, nosync bool) (*journal, error) {
	posKey := journalPosKey(node)
	done, err := l.journalPos(posKey)
	if err != nil {
		return nil, err
	}
	j, records, err := openJournal(path, nosync)
	if err != nil {
		return nil, err
	}
	j.posKey = posKey
	if done.epoch == j.epoch {
		// Records up to done are in the store. If a power loss took some of
		// them (unsynced), none after them was synced either.
		i := 0
		for i < len(records) && records[i].end <= done.off {
			i++
		}
		records = records[i:]
	}
	for len(records) > 0 {
		n := min(len(records), indexMaxRows)
		entries := make([]auditEntry, 0, n)
		at := map[string]int{} // key → index in entries: a row's last version wins
		for _, rec := range records[:n] {
			var r Row
			if err := decodeAuditRow(rec.payload, nil, &r); err != nil {
				j.close()
				return nil, fmt.Errorf("audit: journal: %w", err)
			}
			e, err := r.prepare(l.now)
			if err != nil {
				j.close()
				return nil, fmt.Errorf("audit: journal: %w", err)
			}
			if i, ok := at[string(e.key)]; ok {
				entries[i] = e
				continue
			}
			at[string(e.key)] = len(entries)
			entries = append(entries, e)
		}
		if err := commitChunk(l.db, l.as, entries, posKey, journalPos{j.epoch, records[n-1].end}); err != nil {
			j.close()
			return nil, err
		}
		records = records[n:]
	}
	// A new journal (or one that was replaced) starts past the epoch the
	// vault last recorded, so that position never names one of its records.
	j.epoch = max(j.epoch, done.epoch)
	if err := j.rewind(); err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

// journalPos reads the position recorded under posKey. A node's key that
// is absent while the single key of a one-node vault is set takes that
// position over: the key moves to the node's in one Update (re-read there,
// so of replicas starting together on a copied store one takes it), and
// the node's journal, which the single key described, goes on from it.
func (l *Log) journalPos(posKey []byte) (journalPos, error) {
	var done journalPos
	legacy := false
	if err := l.db.View(func(tx storage.Tx) error {
		meta := tx.Bucket(bMeta)
		done = indexedPos(meta, posKey)
		legacy = meta.Get(posKey) == nil && !bytes.Equal(posKey, metaAuditJournal) && meta.Get(metaAuditJournal) != nil
		return nil
	}); err != nil || !legacy {
		return done, err
	}
	err := l.db.Update(func(tx storage.Tx) error {
		meta := tx.Bucket(bMeta)
		if v := meta.Get(posKey); v != nil {
			done = indexedPos(meta, posKey)
			return nil
		}
		v := meta.Get(metaAuditJournal)
		if v == nil {
			done = journalPos{}
			return nil
		}
		done = indexedPos(meta, metaAuditJournal)
		if err := meta.Put(posKey, append([]byte(nil), v...)); err != nil {
			return err
		}
		return meta.Delete(metaAuditJournal)
	})
	return done, err
}
