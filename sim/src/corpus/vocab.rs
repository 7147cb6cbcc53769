//! Word lists for realistic message content: Chinese business chat, names, places, file names
//! (including hostile ones), emoji.

use rand::{Rng, RngCore};

pub const SURNAMES: &[&str] = &[
    "zhang", "wang", "li", "zhao", "chen", "liu", "yang", "huang", "zhou", "wu", "xu", "sun", "ma", "zhu",
    "hu", "guo", "he", "lin", "luo", "gao",
];
pub const GIVEN: &[&str] = &[
    "wei", "fang", "na", "min", "jing", "li", "qiang", "lei", "jun", "yang", "yong", "yan", "jie", "tao",
    "ming", "chao", "xiuying", "xia", "ping", "gang", "hui", "jinsheng", "yu", "hao",
];
pub const DISPLAY_NAMES: &[&str] = &[
    "张伟", "王芳", "李娜", "刘洋", "陈静", "杨磊", "赵敏", "黄强", "周杰", "吴涛", "徐明", "孙丽", "Alice",
    "Bob", "Carol", "David", "Emily", "Frank",
];
pub const COMPANIES: &[&str] = &[
    "上海示例贸易有限公司",
    "深圳星河科技有限公司",
    "北京云帆信息技术有限公司",
    "杭州青禾电子商务有限公司",
    "广州南方物流集团",
    "Example Trading Co.",
    "成都蓝鲸教育科技有限公司",
    "苏州工业园区精密制造有限公司",
];
pub const ROOM_NAMES: &[&str] = &[
    "项目组-猎户座",
    "销售一部",
    "客户服务群",
    "2025年会筹备",
    "Project Orion",
    "供应链协同（上下游）",
    "产品需求评审",
    "周末羽毛球🏸",
    "华东区经销商群",
    "技术支持 VIP",
];
pub const PHRASES: &[&str] = &[
    "您好，报价单已发到邮箱，请查收。",
    "好的，收到",
    "明天上午十点开会，请准时参加",
    "这个方案我再看一下，稍后回复您",
    "合同已经盖章寄出，快递单号稍后发您",
    "请问发票抬头是哪个？",
    "谢谢！",
    "辛苦了👍",
    "我们这边下周一可以安排发货",
    "价格方面还能再优惠一点吗？",
    "收到，马上处理",
    "麻烦把最新的需求文档发一下",
    "会议纪要已经整理好了，放在共享盘",
    "Can we move the review to 3pm?",
    "OK, sounds good.",
    "客户反馈系统登录不了，帮忙看一下",
    "今天的日报：完成了接口联调，修复了3个bug",
    "好的😊",
    "在吗？",
    "这个周五之前能给到吗",
    "已转账，请查收",
    "样品已经寄到了，您那边确认一下",
    "下午我去客户那边拜访，有事电话联系",
    "节日快乐🎉🎉",
    "Please find the attached invoice.",
    "哈哈哈哈😂",
    "[捂脸]",
    "发票已开，电子版发你邮箱了",
    "库存还剩200件，需要补货吗？",
    "这个价格含税吗？",
];
pub const EMOJI: &[&str] =
    &["😀", "👍", "🎉", "🙏", "😂", "❤️", "🔥", "✅", "🤝", "💰", "📦", "🚚", "👨‍👩‍👧", "🇨🇳"];
pub const TITLES: &[&str] = &[
    "季度销售总结",
    "Release checklist",
    "新品发布会邀请函",
    "2025年度预算（草案）",
    "客户满意度调查",
    "Q2 roadmap draft",
    "员工手册v3",
    "物流时效说明",
];
pub const ADDRESSES: &[(&str, &str, f64, f64)] = &[
    ("上海市黄浦区人民大道100号", "人民广场", 121.473701, 31.230416),
    ("北京市海淀区中关村大街27号", "中关村大厦", 116.316833, 39.983427),
    ("广东省深圳市南山区科技园南区", "腾讯滨海大厦", 113.941209, 22.522814),
    ("浙江省杭州市西湖区文三路478号", "华星时代广场", 120.131023, 30.279184),
    ("四川省成都市高新区天府大道中段", "天府软件园", 104.068632, 30.545389),
];
pub const URLS: &[&str] = &[
    "https://example.com/wiki/release-checklist",
    "https://mp.weixin.qq.com/s/AbCdEfGh123456",
    "https://doc.example.com/doc/q2-roadmap",
    "https://example.com/notice/42?from=wecom&lang=zh_CN",
    "https://work.weixin.qq.com/",
];
pub const FILE_STEMS: &[&str] = &[
    "季度计划-示例",
    "合同扫描件",
    "报价单_2025",
    "meeting-notes",
    "产品手册",
    "invoice_0042",
    "需求文档 v2.1",
    "发货清单",
    "train-data",
    "截图",
];
pub const FILE_EXTS: &[(&str, crate::media::MediaFormat)] = &[
    ("pdf", crate::media::MediaFormat::Pdf),
    ("docx", crate::media::MediaFormat::Zip),
    ("xlsx", crate::media::MediaFormat::Zip),
    ("pptx", crate::media::MediaFormat::Zip),
    ("zip", crate::media::MediaFormat::Zip),
    ("txt", crate::media::MediaFormat::Text),
    ("csv", crate::media::MediaFormat::Text),
    ("png", crate::media::MediaFormat::Png),
    ("jpg", crate::media::MediaFormat::Jpeg),
    ("bin", crate::media::MediaFormat::Binary),
];

pub fn pick<'a, T>(rng: &mut impl RngCore, list: &'a [T]) -> &'a T {
    &list[rng.random_range(0..list.len())]
}

/// Characters of WeCom-style opaque ids (`wm…`, `wr…`).
const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// `prefix` + random id characters up to 32 in total, like `wmGAgeDQAAdBjb8CK_ieMC6pdaHCgWpg`.
pub fn opaque_id(rng: &mut impl RngCore, prefix: &str) -> String {
    let mut s = String::from(prefix);
    while s.len() < 32 {
        s.push(ID_CHARS[rng.random_range(0..ID_CHARS.len())] as char);
    }
    s
}

pub fn hex(rng: &mut impl RngCore, n: usize) -> String {
    const H: &[u8] = b"0123456789abcdef";
    (0..n).map(|_| H[rng.random_range(0..16)] as char).collect()
}

/// A chat text: phrases, sometimes emoji, sometimes long; never contains control characters
/// (those are added by the caller as raw bytes on purpose).
pub fn chat_text(rng: &mut impl RngCore) -> String {
    let mut s = String::new();
    let roll = rng.random_range(0..1000);
    let parts = if roll < 30 {
        // Long texts, a few kilobytes up to ~20 KB.
        rng.random_range(60..600)
    } else if roll < 32 {
        // Very long: ~60 KB.
        2000
    } else {
        rng.random_range(1..4)
    };
    for i in 0..parts {
        if i > 0 && rng.random_range(0..8) == 0 {
            s.push('\n');
        }
        s.push_str(pick::<&str>(rng, PHRASES));
        if rng.random_range(0..6) == 0 {
            s.push_str(pick::<&str>(rng, EMOJI));
        }
    }
    s
}

/// A file name; about one in eight is hostile (path traversal, absolute paths, control
/// characters, 300-byte names, reserved names…), as real uploads can be.
pub fn file_name(rng: &mut impl RngCore) -> (String, crate::media::MediaFormat) {
    let (ext, format) = *pick(rng, FILE_EXTS);
    if rng.random_range(0..8) == 0 {
        let name = match rng.random_range(0..14) {
            0 => "../../x".to_string(),
            1 => format!("../../../etc/cron.d/evil.{ext}"),
            2 => format!("/etc/passwd.{ext}"),
            3 => format!("C:\\Windows\\System32\\drivers\\etc\\hosts.{ext}"),
            4 => format!("bell\u{7}tab\tnew\nline\u{1b}[31mred.{ext}"),
            5 => format!("{}.{ext}", "a".repeat(300 - 1 - ext.len())),
            6 => {
                // 300 bytes of CJK (3 bytes each) including the extension.
                let mut n = String::new();
                while n.len() + 3 + 1 + ext.len() <= 300 {
                    n.push('长');
                }
                while n.len() + 1 + ext.len() < 300 {
                    n.push('x');
                }
                format!("{n}.{ext}")
            }
            7 => "..".to_string(),
            8 => format!("CON.{ext}"),
            9 => format!(" leading and trailing spaces .{ext} "),
            10 => format!("a/b/c/nested.{ext}"),
            11 => format!("%2e%2e%2fencoded.{ext}"),
            12 => format!("emoji😀文件名.{ext}"),
            _ => String::new(),
        };
        return (name, format);
    }
    let stem = pick(rng, FILE_STEMS);
    (format!("{stem}.{ext}"), format)
}

/// The extension WeCom reports: what follows the last dot of the name, if any.
pub fn file_ext(name: &str) -> String {
    match name.rsplit_once('.') {
        Some((_, e)) if !e.contains('/') && !e.contains('\\') => e.trim().to_string(),
        _ => String::new(),
    }
}
