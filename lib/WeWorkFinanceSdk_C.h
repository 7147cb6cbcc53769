/*
 * WeWorkFinanceSdk_C.h — the C ABI of Tencent's WeCom Finance SDK (会话内容存档),
 * libWeWorkFinanceSdk_C.so.
 *
 * Written for wework-archive from the ABI facts established by running the real
 * library (shared/sdk/PROTOCOL.md §8); it is not Tencent's header. bindgen turns it
 * into sys/src/bindings.rs (scripts/regen-bindings.sh); a CI step fails if the
 * checked-in bindings drift from this file.
 *
 * Every function returning int returns 0 on success or one of the 10000–10011
 * codes: 10000 bad parameter, 10001 network error, 10002 data parse failure,
 * 10003 system failure, 10004 encryption failed (key error), 10005 bad fileid,
 * 10006 decrypt failure, 10007 no private key for this version, 10008 failed to
 * parse encrypt_key, 10009 illegal IP, 10010 data expired, 10011 certificate error.
 */
#ifndef WEWORK_FINANCE_SDK_C_H
#define WEWORK_FINANCE_SDK_C_H

#ifdef __cplusplus
extern "C" {
#endif

/* Opaque SDK handle: created by NewSdk, configured by Init, freed by DestroySdk. */
typedef struct WeWorkFinanceSdk_t WeWorkFinanceSdk_t;

/* A binary buffer owned by the SDK (buf is NUL-terminated but may contain NULs; use len). */
typedef struct Slice_t {
    char *buf;
    int len;
} Slice_t;

/* One media chunk: the next index buffer, the plaintext bytes and the end flag. */
typedef struct MediaData_t {
    char *outindexbuf;
    int out_len;
    char *data;
    int data_len;
    int is_finish;
} MediaData_t;

WeWorkFinanceSdk_t *NewSdk(void);
int Init(WeWorkFinanceSdk_t *sdk, const char *corpid, const char *secret);
int GetChatData(WeWorkFinanceSdk_t *sdk, unsigned long long seq, unsigned int limit,
                const char *proxy, const char *passwd, int timeout, Slice_t *chat_datas);
int DecryptData(const char *encrypt_key, const char *encrypt_msg, Slice_t *msg);
int GetMediaData(WeWorkFinanceSdk_t *sdk, const char *indexbuf, const char *sdkFileid,
                 const char *proxy, const char *passwd, int timeout, MediaData_t *media_data);
void DestroySdk(WeWorkFinanceSdk_t *sdk);

Slice_t *NewSlice(void);
void FreeSlice(Slice_t *slice);
char *GetContentFromSlice(Slice_t *slice);
int GetSliceLen(Slice_t *slice);

MediaData_t *NewMediaData(void);
void FreeMediaData(MediaData_t *media_data);
char *GetOutIndexBuf(MediaData_t *media_data);
char *GetData(MediaData_t *media_data);
int GetIndexLen(MediaData_t *media_data);
int GetDataLen(MediaData_t *media_data);
int IsMediaDataFinish(MediaData_t *media_data);

#ifdef __cplusplus
}
#endif

#endif /* WEWORK_FINANCE_SDK_C_H */
