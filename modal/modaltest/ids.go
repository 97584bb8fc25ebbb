package modaltest

import (
	"crypto/rand"
	"encoding/binary"
	"math/big"
	"time"
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// newID returns prefix + "-" + 22 random base62 characters, the shape of
// Modal's object ids ("ap-…", "im-…", "ta-…"), and of V1 sandbox ids.
func newID(prefix string) string {
	b := make([]byte, 0, len(prefix)+23)
	b = append(b, prefix...)
	b = append(b, '-')
	max := big.NewInt(int64(len(base62)))
	for range 22 {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			panic(err)
		}
		b = append(b, base62[n.Int64()])
	}
	return string(b)
}

const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// newULID returns a ULID (48-bit millisecond time, 80 random bits, 26
// Crockford base32 characters): the shape of V2 sandbox ids after "sb-".
func newULID(t time.Time) string {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(t.UnixMilli())<<16)
	if _, err := rand.Read(raw[6:]); err != nil {
		panic(err)
	}
	// 128 bits as 26 base32 digits, most significant first (the first
	// digit carries only 3 bits).
	hi := binary.BigEndian.Uint64(raw[:8])
	lo := binary.BigEndian.Uint64(raw[8:])
	out := make([]byte, 26)
	for i := 25; i >= 0; i-- {
		out[i] = crockford[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out)
}
