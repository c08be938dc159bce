/* Memory copies, as arch/x86/lib makes them: one rep string instruction each. */
#ifndef _LINUX_STRING_H
#define _LINUX_STRING_H

void *memcpy(void *dest, const void *src, unsigned long n);
void *memset(void *s, int c, unsigned long n);

#endif /* _LINUX_STRING_H */
