/*
 * printk: format a message and write it to the console in one hypercall,
 * so that lines from different CPUs never interleave.
 *
 * The formats: %s %c %d %i %u %x %X %p %%, with the length modifiers l and
 * ll, a field width and the 0 and - flags.  No floating point.
 */
#include <linux/kernel.h>
#include <asm/hypercall.h>

#define PRINTK_MAX	256	/* longest message; the rest is cut */

struct outbuf {
	char *buf;
	unsigned long size;	/* room in buf, including the final NUL */
	unsigned long len;	/* characters stored so far */
};

static void put_char(struct outbuf *out, char c)
{
	if (out->len + 1 < out->size)
		out->buf[out->len++] = c;
}

static void put_padding(struct outbuf *out, char pad, int count)
{
	while (count-- > 0)
		put_char(out, pad);
}

/* Puts str (len characters) in a field of width, right-aligned unless left. */
static void put_field(struct outbuf *out, const char *str, int len,
		      int width, int left, char pad)
{
	int i;

	if (!left)
		put_padding(out, pad, width - len);
	for (i = 0; i < len; i++)
		put_char(out, str[i]);
	if (left)
		put_padding(out, ' ', width - len);
}

static void put_number(struct outbuf *out, unsigned long value, int negative,
		       unsigned int base, int upper, int width, int left,
		       char pad)
{
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
	char tmp[24];	/* 20 decimal digits of 2^64 - 1 and a sign */
	int n = 0, len;

	do {
		tmp[n++] = digits[value % base];
		value /= base;
	} while (value);
	len = n + negative;

	if (!left && pad == ' ')
		put_padding(out, ' ', width - len);
	if (negative)
		put_char(out, '-');
	if (!left && pad == '0')
		put_padding(out, '0', width - len);
	while (n > 0)
		put_char(out, tmp[--n]);
	if (left)
		put_padding(out, ' ', width - len);
}

int vscnprintf(char *buf, unsigned long size, const char *fmt, va_list args)
{
	struct outbuf out = { .buf = buf, .size = size, .len = 0 };

	if (!size)
		return 0;

	for (; *fmt; fmt++) {
		int left = 0, width = 0, longs = 0;
		char pad = ' ';

		if (*fmt != '%') {
			put_char(&out, *fmt);
			continue;
		}
		fmt++;

		for (;; fmt++) {
			if (*fmt == '-')
				left = 1;
			else if (*fmt == '0')
				pad = '0';
			else
				break;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		while (*fmt == 'l') {
			longs++;
			fmt++;
		}

		switch (*fmt) {
		case 's': {
			const char *s = va_arg(args, const char *);
			int len = 0;

			if (!s)
				s = "(null)";
			while (s[len])
				len++;
			put_field(&out, s, len, width, left, ' ');
			break;
		}
		case 'c': {
			char c = (char)va_arg(args, int);

			put_field(&out, &c, 1, width, left, ' ');
			break;
		}
		case 'd':
		case 'i': {
			long v = longs ? va_arg(args, long) : va_arg(args, int);
			unsigned long mag = v < 0 ? -(unsigned long)v : (unsigned long)v;

			put_number(&out, mag, v < 0, 10, 0, width, left, pad);
			break;
		}
		case 'u':
		case 'x':
		case 'X': {
			unsigned long v = longs ? va_arg(args, unsigned long)
					        : va_arg(args, unsigned int);

			put_number(&out, v, 0, *fmt == 'u' ? 10 : 16, *fmt == 'X',
				   width, left, pad);
			break;
		}
		case 'p':
			put_char(&out, '0');
			put_char(&out, 'x');
			put_number(&out, (unsigned long)va_arg(args, void *), 0,
				   16, 0, 16, 0, '0');
			break;
		case '%':
			put_char(&out, '%');
			break;
		case '\0':	/* a lone % at the end */
			fmt--;
			break;
		default:	/* unknown: print it as it was written */
			put_char(&out, '%');
			put_char(&out, *fmt);
			break;
		}
	}

	out.buf[out.len] = '\0';
	return (int)out.len;
}

int scnprintf(char *buf, unsigned long size, const char *fmt, ...)
{
	va_list args;
	int len;

	va_start(args, fmt);
	len = vscnprintf(buf, size, fmt, args);
	va_end(args);
	return len;
}

/*
 * The console device: the host's, through a hypercall.  Returns how many
 * bytes it took (it may take fewer than len), or -errno.
 */
long console_write(const char *buf, unsigned long len)
{
	return hypercall2(HC_CONSOLE_WRITE, (unsigned long)buf, len);
}

int printk(const char *fmt, ...)
{
	char buf[PRINTK_MAX];
	va_list args;
	int len;

	va_start(args, fmt);
	len = vscnprintf(buf, sizeof(buf), fmt, args);
	va_end(args);
	console_write(buf, len);
	return len;
}
