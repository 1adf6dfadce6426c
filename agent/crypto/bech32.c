/* SPDX-License-Identifier: GPL-2.0-or-later */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>

#include "crypto/bech32.h"
#include "shared/util.h"

static const char charset[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

static uint32_t polymod_step(uint32_t chk, uint8_t v) {
        static const uint32_t gen[5] = { 0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3 };
        uint8_t top = (uint8_t) (chk >> 25);

        chk = ((chk & 0x1ffffff) << 5) ^ v;
        for (unsigned i = 0; i < 5; i++)
                if ((top >> i) & 1)
                        chk ^= gen[i];
        return chk;
}

/* The checksum covers the hrp (lower case) expanded into high bits, a zero, and low bits. */
static uint32_t polymod_hrp(const char *hrp, size_t hlen) {
        uint32_t chk = 1;

        for (size_t i = 0; i < hlen; i++)
                chk = polymod_step(chk, (uint8_t) tolower((unsigned char) hrp[i]) >> 5);
        chk = polymod_step(chk, 0);
        for (size_t i = 0; i < hlen; i++)
                chk = polymod_step(chk, (uint8_t) tolower((unsigned char) hrp[i]) & 31);
        return chk;
}

/* Regroups bits; with pad = false (decoding) leftover bits must be fewer than from_bits and zero. */
static int convert_bits(const uint8_t *in, size_t n, unsigned from, unsigned to, bool pad, uint8_t *out,
                        size_t *ret_len) {
        uint32_t acc = 0, maxv = (1u << to) - 1;
        unsigned bits = 0;
        size_t k = 0;

        for (size_t i = 0; i < n; i++) {
                if (in[i] >> from)
                        return -EINVAL;
                acc = (acc << from) | in[i];
                bits += from;
                while (bits >= to) {
                        bits -= to;
                        out[k++] = (uint8_t) ((acc >> bits) & maxv);
                }
        }
        if (pad) {
                if (bits > 0)
                        out[k++] = (uint8_t) ((acc << (to - bits)) & maxv);
        } else if (bits >= from || ((acc << (to - bits)) & maxv))
                return -EINVAL;
        *ret_len = k;
        return 0;
}

/* Printable ASCII only, and never mixed case. */
static int check_chars(const char *s, size_t n) {
        bool has_lower = false, has_upper = false;

        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) s[i];
                if (c < 33 || c > 126)
                        return -EINVAL;
                has_lower = has_lower || islower(c);
                has_upper = has_upper || isupper(c);
        }
        return has_lower && has_upper ? -EINVAL : 0;
}

int bech32_encode(const char *hrp, const uint8_t *data, size_t len, bool upper, char **ret) {
        _cleanup_free_ uint8_t *five = NULL;
        _cleanup_free_ char *s = NULL;
        size_t hlen = strlen(hrp), n5 = 0, k = 0;
        uint32_t chk;

        if (hlen == 0 || check_chars(hrp, hlen) < 0)
                return -EINVAL;

        five = xmalloc(len * 8 / 5 + 2);
        (void) convert_bits(data, len, 8, 5, true, five, &n5);

        s = xmalloc(hlen + 1 + n5 + 6 + 1);
        for (size_t i = 0; i < hlen; i++)
                s[k++] = (char) (upper ? toupper((unsigned char) hrp[i]) : tolower((unsigned char) hrp[i]));
        s[k++] = '1';
        chk = polymod_hrp(hrp, hlen);
        for (size_t i = 0; i < n5; i++) {
                chk = polymod_step(chk, five[i]);
                s[k++] = charset[five[i]];
        }
        for (unsigned i = 0; i < 6; i++)
                chk = polymod_step(chk, 0);
        chk ^= 1;
        for (unsigned i = 0; i < 6; i++)
                s[k++] = charset[(chk >> (5 * (5 - i))) & 31];
        s[k] = 0;
        if (upper)
                for (size_t i = 0; i < k; i++)
                        s[i] = (char) toupper((unsigned char) s[i]);
        *ret = TAKE_PTR(s);
        return 0;
}

int bech32_decode(const char *s, char **ret_hrp, uint8_t **ret_data, size_t *ret_len) {
        _cleanup_free_ uint8_t *five = NULL, *data = NULL;
        _cleanup_free_ char *hrp = NULL;
        size_t len = strlen(s), n5, dlen;
        const char *one = strrchr(s, '1');
        size_t sep = one ? (size_t) (one - s) : SIZE_MAX;
        uint32_t chk;
        int r;

        if (check_chars(s, len) < 0)
                return -EINVAL;
        /* The separator is the last '1'; at least one hrp character and six checksum characters. */
        if (sep == SIZE_MAX || sep < 1 || sep + 7 > len)
                return -EINVAL;

        n5 = len - sep - 1;
        five = xmalloc(n5);
        chk = polymod_hrp(s, sep);
        for (size_t i = 0; i < n5; i++) {
                const char *p = strchr(charset, tolower((unsigned char) s[sep + 1 + i]));
                if (!p || !*p)
                        return -EINVAL;
                five[i] = (uint8_t) (p - charset);
                chk = polymod_step(chk, five[i]);
        }
        if (chk != 1)
                return -EINVAL;

        data = xmalloc(n5 * 5 / 8 + 1);
        r = convert_bits(five, n5 - 6, 5, 8, false, data, &dlen);
        if (r < 0)
                return r;

        hrp = xstrndup(s, sep);
        for (char *p = hrp; *p; p++)
                *p = (char) tolower((unsigned char) *p);
        *ret_hrp = TAKE_PTR(hrp);
        *ret_data = TAKE_PTR(data);
        *ret_len = dlen;
        return 0;
}
