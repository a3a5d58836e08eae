package session

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"errors"
)

// sealVersion is the first byte of every sealed record: AES-256-GCM with a
// random 96-bit nonce, the version byte and the storage key as additional
// data. A new format gets a new byte.
const sealVersion byte = 1

// Storage key prefixes: a session, its refresh lock, a pending login.
//
// Cluster safety: every key is a prefix and base64url of a hash (no "{",
// so no hash tag), and no operation touches two keys: a session and its
// lock are separate commands (SET NX and a compare-and-delete on the
// lock; a compare-and-swap script on the session, KEYS[1] alone), as
// are the token caches' entries and locks (tokencache.go), the session
// index's records and locks (index.go), the throttle's counters
// (throttle.go) and the replay records (replay.go). Keys spread over every slot of a
// Redis Cluster, none needs to share one, and so none carries a hash tag.
// The pub/sub channel is not a key: a cluster broadcasts it to every node.
const (
	sessionPrefix = "s:"
	lockPrefix    = "l:"
	statePrefix   = "st:"
)

// errOpen hides why a record failed to decrypt: wrong key, wrong storage key,
// truncated or tampered, all look the same to the caller.
var errOpen = errors.New("session: cannot decrypt record")

// hashKey returns prefix + base64url(SHA-256(secret)), the storage key for a
// secret identifier: the store never sees the identifier itself.
func hashKey(prefix string, secret []byte) string {
	sum := sha256.Sum256(secret)
	buf := make([]byte, len(prefix)+base64.RawURLEncoding.EncodedLen(len(sum)))
	copy(buf, prefix)
	base64.RawURLEncoding.Encode(buf[len(prefix):], sum[:])
	return string(buf)
}

// newAEAD returns AES-256-GCM under key, generating and prefixing a random
// nonce on Seal.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// seal encrypts plaintext under key, bound to storageKey.
func seal(key []byte, storageKey string, plaintext []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 1, 1+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out[0] = sealVersion
	return aead.Seal(out, nil, plaintext, additionalData(storageKey)), nil
}

// open decrypts a record written by seal; any failure is errOpen.
func open(key []byte, storageKey string, record []byte) ([]byte, error) {
	if len(record) < 1 || record[0] != sealVersion {
		return nil, errOpen
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, errOpen
	}
	pt, err := aead.Open(nil, nil, record[1:], additionalData(storageKey))
	if err != nil {
		return nil, errOpen
	}
	return pt, nil
}

// additionalData binds a record to its version and storage key, so that a
// record copied under another key does not decrypt.
func additionalData(storageKey string) []byte {
	ad := make([]byte, 1+len(storageKey))
	ad[0] = sealVersion
	copy(ad[1:], storageKey)
	return ad
}
