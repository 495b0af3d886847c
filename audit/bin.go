package audit

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// The audit row's binary encoding: what the journal, the audit buckets
// and a backend's audit table (storage.AuditRecord.Data) hold. Rows
// written before it are JSON, which starts with '{':
// decodeAuditRow reads either, by the first byte.
//
//	version  1 byte: auditBinFull (tenant, time and id in the row) or
//	         auditBinKeyed (the audit bucket's value: its key holds them)
//	[full]   time (uvarint, ns since 1970), id (auditIDAppend), tenant (string)
//	mask     uvarint: which of the fields below follow (binField*)
//	fields   in mask order: strings (auditStr), ints (zigzag varints),
//	         DurationMS as thousandths (varint) or 8 bytes of float64,
//	         Uses (count, then each: its own mask, fields), Details
//	         (count, then key and value strings, keys ascending)
//
// A string is a uvarint x: x odd is entry x>>1 of auditDict (values rows
// repeat: outcomes, levels, methods), x even a literal of x>>1 bytes. No
// field name is written; the layout is fixed by the version byte, so a
// later layout takes a new one.
const (
	auditBinFull  = 0x01
	auditBinKeyed = 0x02
)

// Fields of the row mask, in the order they are written.
const (
	binKind = iota
	binWorkspaceID
	binOwnerUserID
	binExternalUserID
	binExternalWorkspaceID
	binExternalProjectID
	binSandboxID
	binActorKind
	binActorID
	binAction
	binSecretID
	binSecretName
	binSecretVersion
	binLevel
	binHost
	binMethod
	binPath
	binStatus
	binOutcome
	binReason
	binDurationMilli // DurationMS*1000 as a varint, exact
	binDurationBits  // DurationMS's 8 bytes
	binUses
	binDetails
	binFieldCount
)

// Fields of a use's mask.
const (
	useName       = iota
	useNameSame   // Name is the row's SecretName
	useSecretID   //
	useSecretSame // SecretID is the row's SecretID
	useVersion
	useLevel
	useLocation
	useAction
	useReason
	useLeak
	useLeakSandboxID
	useFieldCount
)

// auditDict is the strings a row's string may name by index. Append
// only: a stored row names them by position.
var auditDict = [...]string{
	"request", "admin", "substituted", "denied", "passed", "tunnelled", "upstream_error", "left",
	"tenant", "workspace", "external_user", "external_workspace", "sandbox", "owner_user",
	"header", "body", "query", "path", "url",
	"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT",
	"host_not_allowed", "unknown_placeholder", "unresolved", "prefix_missing",
	"api_key", "operator", "browser", "cli",
}

// auditDictByLen lists auditDict's indexes by their string's length: a
// lookup compares s with the few strings of its length (six at most),
// first byte first. A map lookup hashed every string a row encodes, ids
// included, and cost BenchmarkAuditRowEncode/prepare about a quarter of
// its time.
var auditDictByLen = func() (t [20][]uint8) {
	for i, s := range auditDict {
		t[len(s)] = append(t[len(s)], uint8(i))
	}
	return t
}()

// auditDictIndex is s's index in auditDict.
func auditDictIndex(s string) (int, bool) {
	if len(s) >= len(auditDictByLen) || len(s) == 0 {
		return 0, false
	}
	for _, i := range auditDictByLen[len(s)] {
		if d := auditDict[i]; d[0] == s[0] && d == s {
			return int(i), true
		}
	}
	return 0, false
}

func appendAuditStr(b []byte, s string) []byte {
	if i, ok := auditDictIndex(s); ok {
		return binary.AppendUvarint(b, uint64(i)<<1|1)
	}
	b = binary.AppendUvarint(b, uint64(len(s))<<1)
	return append(b, s...)
}

// appendAuditID writes id compactly: an id of NewID's over the row's
// time tb as its 8 random bytes, another of its form as its 16 bytes,
// any other as text.
func appendAuditID(b []byte, id string, tb []byte) []byte {
	if raw, ok := parseAuditID(id); ok {
		if string(raw[:8]) == string(tb) {
			return append(append(b, 1), raw[8:]...)
		}
		return append(append(b, 2), raw[:]...)
	}
	b = append(b, 3)
	b = binary.AppendUvarint(b, uint64(len(id)))
	return append(b, id...)
}

// parseAuditID reads an id of NewID's form back into its 16 bytes;
// ok only when encoding them again gives id itself. It decodes the 26
// characters itself (base32hex, auditIDEncoding's: 8 characters are 5
// bytes), without encoding/base32's copy of the id and its generic loop.
func parseAuditID(id string) (raw [16]byte, ok bool) {
	if len(id) != len(auditIDPrefix)+26 || id[:len(auditIDPrefix)] != auditIDPrefix {
		return raw, false
	}
	s := id[len(auditIDPrefix):]
	for blk := range 3 {
		var v uint64
		for _, c := range []byte(s[blk*8 : blk*8+8]) {
			d := auditIDDigit[c]
			if d == 0xff {
				return raw, false
			}
			v = v<<5 | uint64(d)
		}
		for i := 4; i >= 0; i-- {
			raw[blk*5+i] = byte(v)
			v >>= 8
		}
	}
	hi, lo := auditIDDigit[s[24]], auditIDDigit[s[25]]
	// 26 characters carry 130 bits: the last 2 must be zero for the id to
	// be the one encoding gives back.
	if hi == 0xff || lo == 0xff || lo&3 != 0 {
		return raw, false
	}
	raw[15] = hi<<3 | lo>>2
	return raw, true
}

// auditIDDigit is each byte's value in auditIDEncoding's alphabet
// (base32hex), 0xff for a byte not in it.
var auditIDDigit = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range []byte("0123456789ABCDEFGHIJKLMNOPQRSTUV") {
		t[c] = byte(i)
	}
	return t
}()

func formatAuditID(raw []byte) string {
	return auditIDPrefix + auditIDEncoding.EncodeToString(raw)
}

// appendBinary appends r's binary encoding: full (tenant, time and id
// written) or keyed (they are the bucket key's). r has been through
// prepare.
func (r *Row) appendBinary(b []byte, full bool) []byte {
	tb := auditTime(r.Time)
	if full {
		b = append(b, auditBinFull)
		b = binary.AppendUvarint(b, uint64(r.Time.UnixNano()))
		b = appendAuditID(b, r.ID, tb)
		b = appendAuditStr(b, r.TenantID)
	} else {
		b = append(b, auditBinKeyed)
	}
	return r.appendBinaryBody(b)
}

// appendBinaryBody appends what follows the version byte (and, in the
// full encoding, the tenant, time and id).
func (r *Row) appendBinaryBody(b []byte) []byte {
	var mask uint64
	set := func(bit int, on bool) {
		if on {
			mask |= 1 << bit
		}
	}
	set(binKind, r.Kind != "")
	set(binWorkspaceID, r.WorkspaceID != "")
	set(binOwnerUserID, r.OwnerUserID != "")
	set(binExternalUserID, r.ExternalUserID != "")
	set(binExternalWorkspaceID, r.ExternalWorkspaceID != "")
	set(binExternalProjectID, r.ExternalProjectID != "")
	set(binSandboxID, r.SandboxID != "")
	set(binActorKind, r.ActorKind != "")
	set(binActorID, r.ActorID != "")
	set(binAction, r.Action != "")
	set(binSecretID, r.SecretID != "")
	set(binSecretName, r.SecretName != "")
	set(binSecretVersion, r.SecretVersion != 0)
	set(binLevel, r.Level != "")
	set(binHost, r.Host != "")
	set(binMethod, r.Method != "")
	set(binPath, r.Path != "")
	set(binStatus, r.Status != 0)
	set(binOutcome, r.Outcome != "")
	set(binReason, r.Reason != "")
	milli, exact := durationMilli(r.DurationMS)
	set(binDurationMilli, r.DurationMS != 0 && exact)
	set(binDurationBits, r.DurationMS != 0 && !exact)
	set(binUses, len(r.Uses) > 0)
	set(binDetails, len(r.Details) > 0)
	b = binary.AppendUvarint(b, mask)
	str := func(bit int, s string) {
		if mask&(1<<bit) != 0 {
			b = appendAuditStr(b, s)
		}
	}
	str(binKind, r.Kind)
	str(binWorkspaceID, r.WorkspaceID)
	str(binOwnerUserID, r.OwnerUserID)
	str(binExternalUserID, r.ExternalUserID)
	str(binExternalWorkspaceID, r.ExternalWorkspaceID)
	str(binExternalProjectID, r.ExternalProjectID)
	str(binSandboxID, r.SandboxID)
	str(binActorKind, r.ActorKind)
	str(binActorID, r.ActorID)
	str(binAction, r.Action)
	str(binSecretID, r.SecretID)
	str(binSecretName, r.SecretName)
	if r.SecretVersion != 0 {
		b = binary.AppendVarint(b, int64(r.SecretVersion))
	}
	str(binLevel, r.Level)
	str(binHost, r.Host)
	str(binMethod, r.Method)
	str(binPath, r.Path)
	if r.Status != 0 {
		b = binary.AppendVarint(b, int64(r.Status))
	}
	str(binOutcome, r.Outcome)
	str(binReason, r.Reason)
	switch {
	case mask&(1<<binDurationMilli) != 0:
		b = binary.AppendVarint(b, milli)
	case mask&(1<<binDurationBits) != 0:
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(r.DurationMS))
	}
	if len(r.Uses) > 0 {
		b = binary.AppendUvarint(b, uint64(len(r.Uses)))
		for i := range r.Uses {
			b = r.Uses[i].appendBinary(b, r)
		}
	}
	if len(r.Details) > 0 {
		b = binary.AppendUvarint(b, uint64(len(r.Details)))
		keys := make([]string, 0, len(r.Details))
		for k := range r.Details {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			b = appendAuditStr(b, k)
			b = appendAuditStr(b, r.Details[k])
		}
	}
	return b
}

// durationMilli is f in thousandths when that is exact (f ==
// float64(n)/1000, as the proxy's rounded durations are).
func durationMilli(f float64) (int64, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e12 {
		return 0, false
	}
	n := math.Round(f * 1000)
	return int64(n), float64(int64(n))/1000 == f && !(f == 0 && math.Signbit(f))
}

func (u *Use) appendBinary(b []byte, r *Row) []byte {
	var mask uint64
	set := func(bit int, on bool) {
		if on {
			mask |= 1 << bit
		}
	}
	nameSame := u.Name != "" && u.Name == r.SecretName
	secSame := u.SecretID != "" && u.SecretID == r.SecretID
	set(useName, u.Name != "" && !nameSame)
	set(useNameSame, nameSame)
	set(useSecretID, u.SecretID != "" && !secSame)
	set(useSecretSame, secSame)
	set(useVersion, u.Version != 0)
	set(useLevel, u.Level != "")
	set(useLocation, u.Location != "")
	set(useAction, u.Action != "")
	set(useReason, u.Reason != "")
	set(useLeak, u.Leak)
	set(useLeakSandboxID, u.LeakSandboxID != "")
	b = binary.AppendUvarint(b, mask)
	str := func(bit int, s string) {
		if mask&(1<<bit) != 0 {
			b = appendAuditStr(b, s)
		}
	}
	str(useName, u.Name)
	str(useSecretID, u.SecretID)
	if u.Version != 0 {
		b = binary.AppendVarint(b, int64(u.Version))
	}
	str(useLevel, u.Level)
	str(useLocation, u.Location)
	str(useAction, u.Action)
	str(useReason, u.Reason)
	str(useLeakSandboxID, u.LeakSandboxID)
	return b
}

var errAuditBin = errors.New("audit: corrupt record: bad audit row encoding")

// binReader reads a binary row; err is set at the first fault, after
// which every read returns zero values.
type binReader struct {
	b   []byte
	bad bool
}

func (d *binReader) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *binReader) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *binReader) bytes(n uint64) []byte {
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *binReader) str() string {
	x := d.uvarint()
	if x&1 == 1 {
		if x>>1 >= uint64(len(auditDict)) {
			d.fail()
			return ""
		}
		return auditDict[x>>1]
	}
	return string(d.bytes(x >> 1))
}

// skipStr passes over a string without making it.
func (d *binReader) skipStr() {
	if x := d.uvarint(); x&1 == 0 {
		d.bytes(x >> 1)
	} else if x>>1 >= uint64(len(auditDict)) {
		d.fail()
	}
}

func (d *binReader) int() int {
	v := d.varint()
	if v < math.MinInt32 || v > math.MaxInt32 {
		d.fail()
		return 0
	}
	return int(v)
}

func (d *binReader) fail() { d.bad, d.b = true, nil }

// allAuditFields asks decodeAuditRowFields for every field.
const allAuditFields = 1<<binFieldCount - 1

// decodeAuditRow reads a stored row: JSON (written before the binary
// encoding) or binary. A keyed row (the audit bucket's value) takes its
// tenant, time and id from key, the row's key in the audit bucket; key
// is not read otherwise.
func decodeAuditRow(v, key []byte, r *Row) error {
	return decodeAuditRowFields(v, key, r, allAuditFields)
}

// decodeAuditRowFields is decodeAuditRow that fills in only the fields
// of need (binField bits; tenant, time and id always), passing over the
// others without making their strings: what a summary counts costs no
// allocation for the ids and paths it does not look at. A JSON row is
// read whole.
func decodeAuditRowFields(v, key []byte, r *Row, need uint64) error {
	if len(v) > 0 && v[0] == '{' {
		*r = Row{}
		if err := json.Unmarshal(v, r); err != nil {
			return fmt.Errorf("audit: corrupt record: %w", err)
		}
		return nil
	}
	*r = Row{}
	if len(v) == 0 || (v[0] != auditBinFull && v[0] != auditBinKeyed) {
		return errAuditBin
	}
	d := binReader{b: v[1:]}
	if v[0] == auditBinFull {
		ns := d.uvarint()
		if ns > math.MaxInt64 {
			return errAuditBin
		}
		r.Time = time.Unix(0, int64(ns)).UTC()
		r.ID = d.auditID(auditTime(r.Time))
		r.TenantID = d.str()
	} else {
		tenant, tb, suffix, ok := splitAuditRowKey(key)
		if !ok {
			return errAuditBin
		}
		id, ok := auditIDOfSuffix(tb, suffix)
		if !ok {
			return errAuditBin
		}
		r.TenantID, r.Time, r.ID = string(tenant), parseAuditTime(tb), id
	}
	mask := d.uvarint()
	if mask>>binFieldCount != 0 || mask&(1<<binDurationMilli) != 0 && mask&(1<<binDurationBits) != 0 {
		return errAuditBin
	}
	str := func(bit int, s *string) {
		switch {
		case mask&(1<<bit) == 0:
		case need&(1<<bit) != 0:
			*s = d.str()
		default:
			d.skipStr()
		}
	}
	str(binKind, &r.Kind)
	str(binWorkspaceID, &r.WorkspaceID)
	str(binOwnerUserID, &r.OwnerUserID)
	str(binExternalUserID, &r.ExternalUserID)
	str(binExternalWorkspaceID, &r.ExternalWorkspaceID)
	str(binExternalProjectID, &r.ExternalProjectID)
	str(binSandboxID, &r.SandboxID)
	str(binActorKind, &r.ActorKind)
	str(binActorID, &r.ActorID)
	str(binAction, &r.Action)
	str(binSecretID, &r.SecretID)
	str(binSecretName, &r.SecretName)
	if mask&(1<<binSecretVersion) != 0 {
		r.SecretVersion = d.int()
	}
	str(binLevel, &r.Level)
	str(binHost, &r.Host)
	str(binMethod, &r.Method)
	str(binPath, &r.Path)
	if mask&(1<<binStatus) != 0 {
		r.Status = d.int()
	}
	str(binOutcome, &r.Outcome)
	str(binReason, &r.Reason)
	switch {
	case mask&(1<<binDurationMilli) != 0:
		r.DurationMS = float64(d.varint()) / 1000
	case mask&(1<<binDurationBits) != 0:
		if p := d.bytes(8); p != nil {
			r.DurationMS = math.Float64frombits(binary.LittleEndian.Uint64(p))
		}
	}
	if mask&(1<<binUses) != 0 {
		n := d.uvarint()
		if n > uint64(len(d.b)) { // every use takes a byte at least
			return errAuditBin
		}
		if need&(1<<binUses) == 0 {
			for range n {
				d.use(nil, r)
			}
		} else {
			r.Uses = make([]Use, n)
			for i := range r.Uses {
				d.use(&r.Uses[i], r)
			}
		}
	}
	if mask&(1<<binDetails) != 0 {
		n := d.uvarint()
		if n > uint64(len(d.b)) {
			return errAuditBin
		}
		if need&(1<<binDetails) == 0 {
			for range 2 * n {
				d.skipStr()
			}
		} else {
			r.Details = make(map[string]string, n)
			for range n {
				k := d.str()
				r.Details[k] = d.str()
			}
		}
	}
	if d.bad || len(d.b) != 0 {
		return errAuditBin
	}
	return nil
}

// use reads a use into u, or passes over it when u is nil.
func (d *binReader) use(u *Use, r *Row) {
	mask := d.uvarint()
	if mask>>useFieldCount != 0 {
		d.fail()
		return
	}
	if u == nil {
		for bit := range useFieldCount {
			switch {
			case mask&(1<<bit) == 0, bit == useNameSame, bit == useSecretSame, bit == useLeak:
			case bit == useVersion:
				d.varint()
			default:
				d.skipStr()
			}
		}
		return
	}
	str := func(bit int, s *string) {
		if mask&(1<<bit) != 0 {
			*s = d.str()
		}
	}
	str(useName, &u.Name)
	if mask&(1<<useNameSame) != 0 {
		u.Name = r.SecretName
	}
	str(useSecretID, &u.SecretID)
	if mask&(1<<useSecretSame) != 0 {
		u.SecretID = r.SecretID
	}
	if mask&(1<<useVersion) != 0 {
		u.Version = d.int()
	}
	str(useLevel, &u.Level)
	str(useLocation, &u.Location)
	str(useAction, &u.Action)
	str(useReason, &u.Reason)
	u.Leak = mask&(1<<useLeak) != 0
	str(useLeakSandboxID, &u.LeakSandboxID)
}

// auditID reads an id written by appendAuditID, of a row at tb.
func (d *binReader) auditID(tb []byte) string {
	switch tag := d.bytes(1); {
	case tag == nil:
		return ""
	case tag[0] == 1:
		p := d.bytes(8)
		if p == nil {
			return ""
		}
		var raw [16]byte
		copy(raw[:8], tb)
		copy(raw[8:], p)
		return formatAuditID(raw[:])
	case tag[0] == 2:
		p := d.bytes(16)
		if p == nil {
			return ""
		}
		return formatAuditID(p)
	case tag[0] == 3:
		id := string(d.bytes(d.uvarint()))
		if !validAuditID(id) {
			d.fail()
		}
		return id
	default:
		d.fail()
		return ""
	}
}
